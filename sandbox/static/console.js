// Seva Bridge sandbox console: drives the X and Slack stand-ins' control APIs and shows both.
//
// Every piece of tweet or message text reaches the page as text nodes built with the DOM
// (textContent, createElement): nothing from the stand-ins is ever parsed as HTML.
"use strict";

(() => {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const DEFAULT_HANDLE = "SevaHelp";
  const DEFAULT_AGENT = "U0AGENT1";
  const STORE_KEY = "seva-sandbox-console";

  // ------------------------------------------------------------------ small helpers

  const $ = (id) => document.getElementById(id);

  /** Build an element; attrs are properties or attributes, children are nodes or plain text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(parent, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(parent, child);
      else if (child instanceof Node) parent.appendChild(child);
      else parent.appendChild(document.createTextNode(String(child)));
    }
    return parent;
  }

  function load() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch {
      return {};
    }
  }

  function save() {
    try {
      localStorage.setItem(
        STORE_KEY,
        JSON.stringify({
          channel: ui.channel,
          postAs: ui.postAs,
          username: $("tweet-username").value.trim(),
          thread: ui.thread,
        }),
      );
    } catch {
      /* private mode: the console still works, it just forgets */
    }
  }

  function hashHue(text) {
    let h = 0;
    for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  function avatar(label, seed, isApp) {
    const node = el("div", { class: isApp ? "avatar app" : "avatar", "aria-hidden": "true" });
    node.textContent = isApp ? "S" : (String(label).replace(/^@/, "")[0] || "?").toUpperCase();
    if (!isApp) node.style.background = `hsl(${hashHue(seed)} 45% 45%)`;
    return node;
  }

  function snippet(text, max) {
    const flat = String(text || "").replace(/\s+/g, " ").trim();
    return flat.length > max ? flat.slice(0, max - 1) + "…" : flat;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function timeEl(date) {
    if (!date || Number.isNaN(date.getTime())) return null;
    return el("time", { class: "msg-time", datetime: date.toISOString(), title: fullFmt.format(date) }, timeFmt.format(date));
  }

  function tsDate(ts) {
    const seconds = Number(String(ts).split(".")[0]);
    return Number.isFinite(seconds) ? new Date(seconds * 1000) : null;
  }

  /** Slack ts strings compare as (seconds, microseconds); floats would lose the last digits. */
  function cmpTs(a, b) {
    const [as, af = ""] = String(a).split(".");
    const [bs, bf = ""] = String(b).split(".");
    if (as.length !== bs.length) return as.length - bs.length;
    if (as !== bs) return as < bs ? -1 : 1;
    const pa = af.padEnd(6, "0");
    const pb = bf.padEnd(6, "0");
    return pa < pb ? -1 : pa > pb ? 1 : 0;
  }

  async function api(method, path, body) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    if (!resp.ok || (data && data.ok === false)) {
      const detail = data && (data.error || data.detail || data.title || data.message);
      throw new Error(detail ? String(detail) : `HTTP ${resp.status}`);
    }
    return data;
  }

  // ------------------------------------------------------------------ UI state

  const stored = load();
  const ui = {
    x: null,
    slack: null,
    xKey: "",
    slackKey: "",
    channel: stored.channel || null,
    postAs: stored.postAs || null,
    thread: stored.thread || null, // {channel, ts}
    seenTweets: null, // Set of ids seen, null before the first render (nothing flashes then)
    seenMessages: null,
    readCounts: {}, // channel id -> messages seen there
    pending: new Set(), // buttons being clicked: `${ts}|${action_id}`
  };
  if (stored.username) $("tweet-username").value = stored.username;

  /** A link like /#C0HEALTH or /#C0HEALTH/1732900000.000100 opens that channel or thread. */
  function followHash() {
    const m = /^#([A-Z0-9]+)(?:\/(\d+(?:\.\d+)?))?$/.exec(decodeURIComponent(location.hash));
    if (!m) return false;
    ui.channel = m[1];
    ui.thread = m[2] ? { channel: m[1], ts: m[2] } : null;
    return true;
  }
  followHash();

  function handle() {
    return (ui.x && ui.x.account && ui.x.account.username) || DEFAULT_HANDLE;
  }

  // ------------------------------------------------------------------ X

  function tweetsById() {
    const map = new Map();
    for (const t of (ui.x && ui.x.tweets) || []) map.set(String(t.id), t);
    return map;
  }

  function isBotTweet(tweet) {
    const account = (ui.x && ui.x.account) || {};
    return (
      (account.id !== undefined && String(tweet.author_id) === String(account.id)) ||
      (account.username && String(tweet.username).toLowerCase() === String(account.username).toLowerCase())
    );
  }

  function renderX() {
    const state = ui.x;
    const tweets = (state && state.tweets) || [];
    const byId = tweetsById();
    const seen = ui.seenTweets;
    $("x-account").textContent = `help handle @${handle()}`;

    const list = $("timeline");
    const scroll = list.scrollTop;
    const items = [];
    for (const tweet of [...tweets].reverse()) {
      const id = String(tweet.id);
      const bot = isBotTweet(tweet);
      const classes = ["tweet"];
      if (bot) classes.push("bot");
      if (tweet.deleted) classes.push("deleted");
      if (seen && !seen.has(id)) classes.push("flash");

      let context = null;
      if (tweet.in_reply_to_tweet_id) {
        const parent = byId.get(String(tweet.in_reply_to_tweet_id));
        context = el(
          "button",
          {
            type: "button",
            class: "reply-context",
            title: parent ? parent.text : `tweet ${tweet.in_reply_to_tweet_id}`,
            onclick: () => showTweet(String(tweet.in_reply_to_tweet_id)),
          },
          parent
            ? `↪ Replying to @${parent.username}: “${snippet(parent.text, 90)}”`
            : `↪ Replying to tweet ${tweet.in_reply_to_tweet_id}`,
        );
      }

      items.push(
        el(
          "li",
          { class: classes.join(" "), dataset: { id } },
          avatar(tweet.username || "?", tweet.username || tweet.author_id, false),
          el(
            "div",
            { class: "tweet-main" },
            el(
              "div",
              { class: "tweet-head" },
              el("span", { class: "tweet-name" }, `@${tweet.username || tweet.author_id}`),
              bot ? el("span", { class: "badge badge-bot", title: "the bot's account" }, "bot") : null,
              tweet.deleted ? el("span", { class: "badge badge-deleted" }, "deleted") : null,
              timeEl(tweet.created_at ? new Date(tweet.created_at) : null),
            ),
            context,
            el("div", { class: "tweet-text" }, tweet.text || ""),
            el(
              "div",
              { class: "tweet-foot" },
              tweet.deleted
                ? null
                : el("button", { type: "button", class: "link-btn", onclick: () => replyTo(id) }, "Reply"),
              el("span", { class: "muted small", title: `conversation ${tweet.conversation_id || id}` }, `id ${id}`),
            ),
          ),
        ),
      );
    }
    if (!items.length) {
      items.push(el("li", { class: "empty" }, `No tweets yet. Tweet at @${handle()} above to open a ticket.`));
    }
    list.replaceChildren(...items);
    list.scrollTop = scroll;
    ui.seenTweets = new Set(tweets.map((t) => String(t.id)));

    renderReplyOptions(tweets);
    updateCounter();
  }

  function renderReplyOptions(tweets) {
    const select = $("tweet-reply-to");
    const live = [...tweets].reverse().filter((t) => !t.deleted);
    const key = live.map((t) => `${t.id}:${t.username}:${t.text}`).join("\n");
    if (select.dataset.key === key || document.activeElement === select) return;
    const chosen = select.value;
    const options = [el("option", { value: "" }, "— a new tweet —")];
    for (const t of live) {
      options.push(el("option", { value: String(t.id) }, `@${t.username}: ${snippet(t.text, 60)}`));
    }
    select.replaceChildren(...options);
    select.value = live.some((t) => String(t.id) === chosen) ? chosen : "";
    select.dataset.key = key;
  }

  function showTweet(id) {
    const node = $("timeline").querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (!node) return;
    node.scrollIntoView({ block: "center", behavior: "smooth" });
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
  }

  function replyTo(id) {
    const tweet = tweetsById().get(id);
    const select = $("tweet-reply-to");
    select.value = id;
    const box = $("tweet-text");
    const me = $("tweet-username").value.trim().replace(/^@/, "").toLowerCase();
    const prefix = `@${handle()} `;
    if (!box.value.trim() || box.value.trim() === prefix.trim()) {
      const author = tweet && tweet.username;
      const extra =
        author && author.toLowerCase() !== handle().toLowerCase() && author.toLowerCase() !== me ? `@${author} ` : "";
      box.value = prefix + extra;
    }
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    updateCounter();
  }

  function updateCounter() {
    const n = [...$("tweet-text").value].length;
    const counter = $("tweet-count");
    counter.textContent = `${n}/280`;
    counter.classList.toggle("over", n > 280);
  }

  async function sendTweet(event) {
    event.preventDefault();
    const form = $("tweet-form");
    const button = form.querySelector("button[type=submit]");
    const username = $("tweet-username").value.trim().replace(/^@/, "");
    const text = $("tweet-text").value;
    const replyId = $("tweet-reply-to").value;
    $("tweet-error").textContent = "";
    if (!username || !text.trim()) {
      $("tweet-error").textContent = "A username and some text, please.";
      return;
    }
    const body = { username, text };
    if (replyId) body.in_reply_to_tweet_id = replyId;
    button.disabled = true;
    try {
      await api("POST", "/x/sandbox/tweets", body);
      $("tweet-text").value = `@${handle()} `;
      $("tweet-reply-to").value = "";
      updateCounter();
      save();
      await refresh();
    } catch (e) {
      $("tweet-error").textContent = `Not tweeted: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ Slack: people and mrkdwn

  function slackUsers() {
    const map = new Map();
    for (const u of (ui.slack && ui.slack.users) || []) map.set(u.id, u);
    return map;
  }

  function isBotUser(userId) {
    return ui.slack && userId === ui.slack.bot_user_id;
  }

  function personName(userId) {
    if (isBotUser(userId)) return "seva";
    const u = slackUsers().get(userId);
    return u ? u.real_name || u.name || userId : userId;
  }

  function channelName(id) {
    const c = ((ui.slack && ui.slack.channels) || []).find((ch) => ch.id === id);
    return c ? c.name : id;
  }

  function decode(text) {
    return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", eyes: "👀", lock: "🔒", unlock: "🔓",
    hourglass: "⌛", hourglass_flowing_sand: "⏳", rotating_light: "🚨", speech_balloon: "💬",
    memo: "📝", bird: "🐦", outbox_tray: "📤", inbox_tray: "📥", warning: "⚠️", "+1": "👍",
    thumbsup: "👍", "-1": "👎", raising_hand: "🙋", raised_hand: "✋", arrows_counterclockwise: "🔄",
    repeat: "🔁", large_green_circle: "🟢", red_circle: "🔴", large_yellow_circle: "🟡",
    white_circle: "⚪", no_entry: "⛔", no_entry_sign: "🚫", bell: "🔔", pushpin: "📌",
    ticket: "🎫", telephone_receiver: "📞", sos: "🆘", fire: "🔥", tada: "🎉", pray: "🙏",
    heart: "❤️", ok: "🆗", link: "🔗", envelope: "✉️", mag: "🔍", wave: "👋", zzz: "💤",
    checkered_flag: "🏁", construction: "🚧", heavy_plus_sign: "➕", question: "❓", exclamation: "❗",
  };

  function emoji(name) {
    return EMOJI[name] || `:${name}:`;
  }

  /** `<…>` entities: mentions, channels, broadcasts, links. Anything else shows as text. */
  function entity(inner) {
    const bar = inner.indexOf("|");
    const target = bar >= 0 ? inner.slice(0, bar) : inner;
    const label = bar >= 0 ? inner.slice(bar + 1) : "";
    if (target.startsWith("@")) {
      const id = target.slice(1);
      return el("span", { class: "mention", title: id }, `@${label ? decode(label) : personName(id)}`);
    }
    if (target.startsWith("#")) {
      const id = target.slice(1);
      return el("span", { class: "mention", title: id }, `#${label ? decode(label) : channelName(id)}`);
    }
    if (target.startsWith("!")) {
      const word = target.slice(1).split("^")[0];
      if (["here", "channel", "everyone"].includes(word)) {
        return el("span", { class: "mention broadcast" }, `@${word}`);
      }
      if (word === "subteam") return el("span", { class: "mention" }, `@${label ? decode(label) : "group"}`);
      return document.createTextNode(decode(label || ""));
    }
    const url = decode(target);
    const shown = decode(label || target);
    if (/^(https?:|mailto:)/i.test(url)) {
      return el("a", { href: url, title: url, target: "_blank", rel: "noopener noreferrer" }, shown);
    }
    return document.createTextNode(shown);
  }

  const BOLD_RE = /(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])/g;
  const ANGLE_RE = /<([^<>\n]*)>/g;
  const FORMAT_RE =
    /(`[^`\n]+`)|(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])|(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])|(https?:\/\/[^\s<>]+[^\s<>.,;:!?)\]'"])|:([a-z0-9_+-]+):/g;

  /** One line of mrkdwn: *bold* (which may hold entities), then entities, then the rest. */
  function renderInline(text, parent) {
    let last = 0;
    for (const m of text.matchAll(BOLD_RE)) {
      renderEntities(text.slice(last, m.index), parent);
      renderEntities(m[1], parent.appendChild(el("strong")));
      last = m.index + m[0].length;
    }
    renderEntities(text.slice(last), parent);
  }

  function renderEntities(text, parent) {
    let last = 0;
    for (const m of text.matchAll(ANGLE_RE)) {
      renderFormatted(text.slice(last, m.index), parent);
      parent.appendChild(entity(m[1]));
      last = m.index + m[0].length;
    }
    renderFormatted(text.slice(last), parent);
  }

  function renderFormatted(text, parent) {
    let last = 0;
    for (const m of text.matchAll(FORMAT_RE)) {
      if (m[5] && !EMOJI[m[5]]) continue; // not an emoji we know: leave ":word:" as typed
      append(parent, [decode(text.slice(last, m.index))]);
      if (m[1]) parent.appendChild(el("code", null, decode(m[1].slice(1, -1))));
      else if (m[2]) parent.appendChild(el("em", null, decode(m[2])));
      else if (m[3]) parent.appendChild(el("s", null, decode(m[3])));
      else if (m[4]) {
        const url = decode(m[4]);
        parent.appendChild(el("a", { href: url, title: url, target: "_blank", rel: "noopener noreferrer" }, url));
      } else parent.appendChild(document.createTextNode(emoji(m[5])));
      last = m.index + m[0].length;
    }
    append(parent, [decode(text.slice(last))]);
  }

  /** Slack mrkdwn, minimally: code blocks, quotes, *bold*, _italic_, ~strike~, `code`, entities. */
  function renderMrkdwn(text) {
    const frag = document.createDocumentFragment();
    const parts = String(text || "").split("```");
    parts.forEach((part, i) => {
      if (i % 2 === 1 && i < parts.length - 1) {
        frag.appendChild(el("pre", null, decode(part.replace(/^\n/, "").replace(/\n$/, ""))));
        return;
      }
      let chunk = i % 2 === 1 ? "```" + part : part;
      if (i > 0) chunk = chunk.replace(/^\n/, "");
      if (i < parts.length - 1) chunk = chunk.replace(/\n$/, "");
      if (!chunk) return;
      let group = null;
      let quoted = false;
      for (const line of chunk.split("\n")) {
        const quote = /^(?:&gt;|>)\s?/.exec(line);
        if (!group || quoted !== Boolean(quote)) {
          quoted = Boolean(quote);
          group = frag.appendChild(el(quoted ? "blockquote" : "p"));
        } else {
          group.appendChild(document.createTextNode("\n"));
        }
        renderInline(quote ? line.slice(quote[0].length) : line, group);
      }
    });
    return frag;
  }

  function textObject(obj) {
    if (!obj || typeof obj.text !== "string") return null;
    if (obj.type === "mrkdwn") return renderMrkdwn(obj.text);
    return el("p", null, obj.text);
  }

  // ------------------------------------------------------------------ Slack: messages

  function actionButton(element, channelId, messageTs) {
    const label = (element.text && element.text.text) || element.action_id || "button";
    if (element.type !== "button" || messageTs === null) {
      return el("button", { type: "button", class: "action-btn", disabled: true, title: element.type }, label);
    }
    const key = `${messageTs}|${element.action_id}`;
    const classes = ["action-btn"];
    if (element.style === "primary") classes.push("primary");
    if (element.style === "danger") classes.push("danger");
    return el(
      "button",
      {
        type: "button",
        class: classes.join(" "),
        disabled: ui.pending.has(key),
        title: `action ${element.action_id}${element.value ? " = " + element.value : ""}`,
        onclick: () => clickAction(channelId, messageTs, element, key),
      },
      label,
    );
  }

  /** Blocks as Slack shows them; null when they add nothing to the text (rich_text only). */
  function renderBlocks(blocks, channelId, messageTs) {
    const frag = document.createDocumentFragment();
    let shown = false;
    for (const block of blocks || []) {
      if (!block || typeof block !== "object") continue;
      switch (block.type) {
        case "section": {
          shown = true;
          const text = textObject(block.text);
          if (text) frag.appendChild(text);
          if (Array.isArray(block.fields) && block.fields.length) {
            frag.appendChild(el("div", { class: "block-fields" }, block.fields.map((f) => el("div", null, textObject(f)))));
          }
          if (block.accessory && block.accessory.type === "button") {
            frag.appendChild(el("div", { class: "actions" }, actionButton(block.accessory, channelId, messageTs)));
          }
          break;
        }
        case "header":
          shown = true;
          frag.appendChild(el("div", { class: "block-header" }, (block.text && block.text.text) || ""));
          break;
        case "context":
          shown = true;
          frag.appendChild(
            el(
              "div",
              { class: "block-context" },
              (block.elements || []).map((e) => (e.type === "image" ? `[${e.alt_text || "image"}] ` : textObject(e))),
            ),
          );
          break;
        case "divider":
          shown = true;
          frag.appendChild(el("hr", { class: "block-divider" }));
          break;
        case "actions":
          shown = true;
          frag.appendChild(
            el("div", { class: "actions" }, (block.elements || []).map((e) => actionButton(e, channelId, messageTs))),
          );
          break;
        case "image":
          shown = true;
          frag.appendChild(el("p", { class: "muted" }, `[image: ${block.alt_text || block.image_url || ""}]`));
          break;
        default:
          break;
      }
    }
    return shown ? frag : null;
  }

  function metadataLabel(metadata) {
    if (!metadata || !metadata.event_type) return null;
    const payload = metadata.event_payload || {};
    const label = payload.ticket !== undefined && payload.ticket !== null ? `${metadata.event_type} #${payload.ticket}` : metadata.event_type;
    return el("span", { class: "msg-meta", title: `metadata ${JSON.stringify(metadata)}` }, label);
  }

  function messageEl(msg, channelId, opts) {
    const bot = Boolean(msg.bot_id) || isBotUser(msg.user) || opts.ephemeral;
    const name = bot ? "seva" : personName(msg.user);
    const classes = ["msg"];
    if (opts.ephemeral) classes.push("ephemeral");
    if (opts.selected) classes.push("selected");
    if (opts.flash) classes.push("flash");

    const body = el("div", { class: "msg-body" });
    // The stand-in can only click buttons of real messages, not of ephemeral ones.
    const blocks = renderBlocks(msg.blocks, channelId, opts.ephemeral ? null : msg.ts);
    body.appendChild(blocks || renderMrkdwn(msg.text));

    const reactions = (msg.reactions || []).filter((r) => r && r.count);
    const reactionRow = reactions.length
      ? el(
          "div",
          { class: "reactions" },
          reactions.map((r) =>
            el(
              "span",
              {
                class: (r.users || []).includes(ui.postAs) ? "reaction mine" : "reaction",
                title: `:${r.name}: by ${(r.users || []).map(personName).join(", ")}`,
              },
              emoji(r.name),
              el("span", null, String(r.count)),
            ),
          ),
        )
      : null;

    let threadRow = null;
    let hoverAction = null;
    if (opts.inChannel && !opts.ephemeral) {
      if (msg.reply_count > 0) {
        const last = opts.lastReplyTs ? tsDate(opts.lastReplyTs) : null;
        threadRow = el(
          "button",
          { type: "button", class: "thread-link", onclick: () => openThread(channelId, msg.ts) },
          `${msg.reply_count} ${msg.reply_count === 1 ? "reply" : "replies"}`,
          last ? el("span", { class: "muted" }, `Last reply ${timeFmt.format(last)}`) : null,
        );
      } else {
        hoverAction = el(
          "button",
          { type: "button", class: "msg-hover-action", onclick: () => openThread(channelId, msg.ts) },
          "Reply in thread",
        );
      }
    }

    return el(
      "div",
      { class: classes.join(" "), dataset: { ts: msg.ts } },
      avatar(name, msg.user, bot),
      el(
        "div",
        { class: "msg-main" },
        el(
          "div",
          { class: "msg-head" },
          el("span", { class: "msg-name" }, name),
          bot ? el("span", { class: "badge badge-app" }, "app") : null,
          timeEl(tsDate(msg.ts)),
          opts.ephemeral ? el("span", { class: "ephemeral-note" }, `Only visible to you (${personName(msg.user)})`) : null,
          metadataLabel(msg.metadata),
          msg.edited ? el("span", { class: "msg-edited", title: `edited by ${personName(msg.edited.user)}` }, "(edited)") : null,
        ),
        body,
        reactionRow,
        threadRow,
      ),
      hoverAction,
    );
  }

  // ------------------------------------------------------------------ Slack: layout

  function currentChannel() {
    const channels = (ui.slack && ui.slack.channels) || [];
    return channels.find((c) => c.id === ui.channel) || channels[0] || null;
  }

  function isAtBottom(node) {
    return node.scrollHeight - node.scrollTop - node.clientHeight < 48;
  }

  function renderSlack(opts) {
    const state = ui.slack;
    if (!state) return;
    const jump = Boolean(opts && opts.jump);
    $("slack-team").textContent = state.team && state.team.name ? `· ${state.team.name}` : "";

    renderUserSelect(state.users || []);

    const channel = currentChannel();
    if (channel && ui.channel !== channel.id) ui.channel = channel.id;
    if (channel) ui.readCounts[channel.id] = channel.messages.length;

    // Channel list, with an unread count for activity elsewhere.
    $("channel-list").replaceChildren(
      ...(state.channels || []).map((c) => {
        const unread = Math.max(0, c.messages.length - (ui.readCounts[c.id] ?? c.messages.length));
        if (ui.readCounts[c.id] === undefined) ui.readCounts[c.id] = c.messages.length;
        const classes = [c.id === ui.channel ? "active" : "", unread ? "unread" : ""].join(" ").trim();
        return el(
          "li",
          null,
          el(
            "button",
            { type: "button", class: classes, title: c.id, onclick: () => selectChannel(c.id) },
            el("span", null, `# ${c.name}`),
            unread ? el("span", { class: "unread-count" }, String(unread)) : null,
          ),
        );
      }),
    );

    const seen = ui.seenMessages;
    const isNew = (m) => Boolean(seen) && !seen.has(`${m.ts}`);
    const mine = (state.ephemeral || []).filter((e) => e.user === ui.postAs);

    // Channel view: top-level messages and this person's ephemerals, oldest first.
    const box = $("channel-messages");
    const stick = jump || isAtBottom(box);
    const scroll = box.scrollTop;
    if (!channel) {
      $("channel-title").textContent = "";
      box.replaceChildren(el("div", { class: "empty" }, "No channels."));
    } else {
      $("channel-title").textContent = `# ${channel.name}`;
      const replies = new Map();
      for (const m of channel.messages) {
        if (m.thread_ts && m.thread_ts !== m.ts) {
          if (!replies.has(m.thread_ts)) replies.set(m.thread_ts, []);
          replies.get(m.thread_ts).push(m);
        }
      }
      const openTs = ui.thread && ui.thread.channel === channel.id ? ui.thread.ts : null;
      const rows = channel.messages
        .filter((m) => !m.thread_ts || m.thread_ts === m.ts)
        .map((m) => ({ ts: m.ts, msg: m, ephemeral: false }));
      for (const e of mine) {
        if (e.channel === channel.id && !(e.thread_ts && e.thread_ts === openTs)) {
          rows.push({ ts: e.ts, msg: e, ephemeral: true });
        }
      }
      rows.sort((a, b) => cmpTs(a.ts, b.ts));
      const nodes = rows.map((row) => {
        const threadReplies = replies.get(row.msg.ts) || [];
        return messageEl(row.msg, channel.id, {
          inChannel: true,
          ephemeral: row.ephemeral,
          selected: row.msg.ts === openTs,
          flash: isNew(row.msg),
          lastReplyTs: threadReplies.length ? threadReplies[threadReplies.length - 1].ts : null,
        });
      });
      if (!nodes.length) nodes.push(el("div", { class: "empty" }, "Nothing here yet. New tickets appear as thread roots."));
      box.replaceChildren(...nodes);
      box.scrollTop = stick ? box.scrollHeight : scroll;
      $("channel-text").placeholder = `Message #${channel.name}, or a command: /ticket help`;
    }

    renderThread(channel, mine, jump);
    ui.seenMessages = new Set(
      (state.channels || []).flatMap((c) => c.messages.map((m) => m.ts)).concat((state.ephemeral || []).map((e) => e.ts)),
    );
  }

  function renderThread(channel, mine, jump) {
    const panel = $("thread");
    const t = ui.thread;
    const root = t && channel && t.channel === channel.id ? channel.messages.find((m) => m.ts === t.ts) : null;
    if (!root) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    $("thread-channel").textContent = `# ${channel.name}`;
    $("thread-hint").textContent = `as ${personName(ui.postAs)} · note: stays internal · !close, !claim`;

    const box = $("thread-messages");
    const stick = jump || isAtBottom(box);
    const scroll = box.scrollTop;
    const seen = ui.seenMessages;
    const isNew = (m) => Boolean(seen) && !seen.has(m.ts);
    const replies = channel.messages.filter((m) => m.thread_ts === root.ts && m.ts !== root.ts);
    const rows = replies.map((m) => ({ ts: m.ts, msg: m, ephemeral: false }));
    for (const e of mine) {
      if (e.channel === channel.id && e.thread_ts === root.ts) rows.push({ ts: e.ts, msg: e, ephemeral: true });
    }
    rows.sort((a, b) => cmpTs(a.ts, b.ts));
    box.replaceChildren(
      messageEl(root, channel.id, { inChannel: false }),
      el("div", { class: "thread-divider" }, `${replies.length} ${replies.length === 1 ? "reply" : "replies"}`),
      ...rows.map((row) => messageEl(row.msg, channel.id, { inChannel: false, ephemeral: row.ephemeral, flash: isNew(row.msg) })),
    );
    box.scrollTop = stick ? box.scrollHeight : scroll;
  }

  function renderUserSelect(users) {
    const select = $("slack-user");
    const people = users.filter((u) => !u.is_bot);
    const key = people.map((u) => `${u.id}:${u.real_name}:${u.name}`).join("\n");
    if (!people.some((u) => u.id === ui.postAs)) {
      const agent = people.find((u) => u.id === DEFAULT_AGENT) || people[0];
      ui.postAs = agent ? agent.id : null;
    }
    if (select.dataset.key !== key && document.activeElement !== select) {
      select.replaceChildren(
        ...people.map((u) => el("option", { value: u.id }, `${u.real_name || u.name} (@${u.name})`)),
      );
      select.dataset.key = key;
    }
    if (ui.postAs && select.value !== ui.postAs) select.value = ui.postAs;
  }

  function selectChannel(id) {
    if (ui.channel === id) return;
    ui.channel = id;
    if (ui.thread && ui.thread.channel !== id) ui.thread = null;
    save();
    renderSlack({ jump: true });
  }

  function openThread(channelId, ts) {
    ui.thread = { channel: channelId, ts };
    save();
    renderSlack({ jump: true });
    $("thread-text").focus();
  }

  function closeThread() {
    ui.thread = null;
    save();
    renderSlack();
  }

  // ------------------------------------------------------------------ Slack: actions

  function parseCommand(text) {
    const m = /^(\/\S+)\s*([\s\S]*)$/.exec(text.trim());
    return m ? { command: m[1], text: m[2].trim() } : null;
  }

  async function sendSlack(text, threadTs, errorEl) {
    errorEl.textContent = "";
    const channel = currentChannel();
    if (!channel || !ui.postAs) {
      errorEl.textContent = "Pick a channel and who to post as first.";
      return false;
    }
    const command = parseCommand(text);
    try {
      if (command) {
        const result = await api("POST", "/slack/sandbox/commands", {
          user: ui.postAs,
          channel: channel.id,
          command: command.command,
          text: command.text,
        });
        if (result && result.status !== 200) {
          errorEl.textContent =
            result.status === null || result.status === undefined
              ? `${command.command}: the bot did not answer`
              : `${command.command}: the bot answered HTTP ${result.status}`;
        }
      } else {
        const body = { user: ui.postAs, channel: channel.id, text };
        if (threadTs) body.thread_ts = threadTs;
        await api("POST", "/slack/sandbox/messages", body);
      }
    } catch (e) {
      errorEl.textContent = `Not sent: ${e.message}`;
      return false;
    }
    await refresh({ jump: true });
    return true;
  }

  async function submitComposer(event, boxId, errorId, threadTs) {
    event.preventDefault();
    const box = $(boxId);
    const form = box.form;
    const text = box.value;
    if (!text.trim()) return;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      if (await sendSlack(text, threadTs(), $(errorId))) box.value = "";
    } finally {
      button.disabled = false;
      box.focus();
    }
  }

  async function clickAction(channelId, messageTs, element, key) {
    const errorEl = ui.thread ? $("thread-error") : $("channel-error");
    errorEl.textContent = "";
    ui.pending.add(key);
    renderSlack();
    try {
      const result = await api("POST", "/slack/sandbox/actions", {
        user: ui.postAs,
        channel: channelId,
        message_ts: messageTs,
        action_id: element.action_id,
        value: element.value ?? null,
      });
      if (result && result.status !== 200) {
        errorEl.textContent = `The bot answered the click with HTTP ${result.status ?? "nothing"}`;
      }
    } catch (e) {
      errorEl.textContent = `Click failed: ${e.message}`;
    } finally {
      ui.pending.delete(key);
      await refresh();
      renderSlack();
    }
  }

  function enterSends(boxId) {
    $(boxId).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $(boxId).form.requestSubmit();
      }
    });
  }

  // ------------------------------------------------------------------ polling

  function setLive(ok, detail) {
    const live = $("live");
    live.classList.toggle("ok", ok);
    live.classList.toggle("down", !ok);
    $("live-text").textContent = detail;
  }

  async function refresh(opts) {
    const [x, slack] = await Promise.allSettled([api("GET", "/x/sandbox/state"), api("GET", "/slack/sandbox/state")]);
    if (x.status === "fulfilled") {
      // Only what the console shows: the snapshot's rate-limit counters move with every bot poll.
      const key = JSON.stringify([x.value.account, x.value.tweets]);
      if (key !== ui.xKey) {
        ui.x = x.value;
        ui.xKey = key;
        renderX();
      }
    }
    if (slack.status === "fulfilled") {
      const key = JSON.stringify(slack.value);
      if (key !== ui.slackKey || (opts && opts.jump)) {
        ui.slack = slack.value;
        ui.slackKey = key;
        renderSlack(opts);
      }
    }
    const down = [x.status === "rejected" ? "X" : null, slack.status === "rejected" ? "Slack" : null].filter(Boolean);
    if (down.length) setLive(false, `${down.join(" and ")} stand-in unreachable`);
    else setLive(true, `live · ${timeFmt.format(new Date())}`);
  }

  async function pollForever() {
    try {
      await refresh();
    } catch (e) {
      setLive(false, `sandbox unreachable (${e.message})`);
    }
    setTimeout(pollForever, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  // ------------------------------------------------------------------ wiring

  $("tweet-form").addEventListener("submit", sendTweet);
  $("tweet-text").addEventListener("input", updateCounter);
  $("tweet-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("tweet-form").requestSubmit();
    }
  });
  $("tweet-username").addEventListener("change", save);
  $("slack-user").addEventListener("change", (event) => {
    ui.postAs = event.target.value;
    save();
    renderSlack();
  });
  $("channel-form").addEventListener("submit", (event) => submitComposer(event, "channel-text", "channel-error", () => null));
  $("thread-form").addEventListener("submit", (event) =>
    submitComposer(event, "thread-text", "thread-error", () => (ui.thread ? ui.thread.ts : null)),
  );
  enterSends("channel-text");
  enterSends("thread-text");
  $("thread-close").addEventListener("click", closeThread);
  window.addEventListener("hashchange", () => {
    if (followHash()) {
      save();
      renderSlack({ jump: true });
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.thread) closeThread();
  });

  updateCounter();
  pollForever();
})();
