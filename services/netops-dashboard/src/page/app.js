// NetOps Arcade dashboard: polls api/topology and draws it as SVG, updating elements in place
// (so packet dots keep moving between polls). No libraries, nothing fetched but this server.
//
// Stable test hooks: each link <g> carries data-link="<from>-><to>" and data-state="<state>";
// each node <g> carries data-router="<name>" and data-up="true|false".
(function () {
  "use strict";

  // The SVG namespace is an identifier, not something fetched.
  var NS = "http://www.w3.org/2000/svg";

  // Laid out like the plan's diagram: generator → west → core → east, north above core.
  var LAYOUT = {
    "generator": { x: 110, y: 400 },
    "router-west": { x: 440, y: 400 },
    "router-core": { x: 780, y: 400 },
    "router-east": { x: 1270, y: 400 },
    "router-north": { x: 1030, y: 130 }
  };
  // Anything else (unknown hops, other routers) on a row at the bottom, nearest to core first.
  var EXTRA_SLOTS = [1080, 780, 480, 180, 1330];
  var EXTRA_Y = 630;
  var NODE_H = 96;

  var linkLayer = document.getElementById("links");
  var nodeLayer = document.getElementById("nodes");
  var banner = document.getElementById("banner");
  var statusLine = document.getElementById("status");
  var delivery = document.getElementById("delivery");
  var badge = document.getElementById("version-badge");

  var nodes = new Map(); // name -> { g, rect, caption, name, sub, x, y, w, h }
  var links = new Map(); // "from->to" -> { g, line, rate, drops, dots, geometry }
  var pollMs = 1000;
  var failures = 0;

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  // "0.1.0" → "v0.1.0"; "v1" or "local" stay as they are (same rule as the server's).
  function vlabel(v) {
    return /^[0-9]/.test(v) ? "v" + v : v;
  }

  function fmtRate(x) {
    if (x >= 100) return x.toFixed(0);
    return x.toFixed(1);
  }

  function nodeWidth(name) {
    return Math.max(180, Math.round(name.length * 15.5 + 30));
  }

  function upsertNode(r, pos, standby) {
    var n = nodes.get(r.name);
    if (!n) {
      var g = el("g", { "class": "node", "data-router": r.name }, nodeLayer);
      var title = el("title", {}, g);
      n = {
        g: g,
        title: title,
        rect: el("rect", { rx: 16, ry: 16 }, g),
        caption: el("text", { "class": "caption" }, g),
        name: el("text", { "class": "name" }, g),
        sub: el("text", { "class": "sub" }, g)
      };
      n.name.textContent = r.name;
      nodes.set(r.name, n);
    }
    var w = nodeWidth(r.name);
    n.x = pos.x; n.y = pos.y; n.w = w; n.h = NODE_H;
    n.g.setAttribute("class", "node " + r.kind);
    n.g.setAttribute("data-up", r.up ? "true" : "false");
    n.g.setAttribute("data-kind", r.kind);
    n.rect.setAttribute("x", pos.x - w / 2);
    n.rect.setAttribute("y", pos.y - NODE_H / 2);
    n.rect.setAttribute("width", w);
    n.rect.setAttribute("height", NODE_H);
    n.caption.setAttribute("x", pos.x);
    n.caption.setAttribute("y", pos.y - 22);
    n.name.setAttribute("x", pos.x);
    n.name.setAttribute("y", pos.y + 10);
    n.sub.setAttribute("x", pos.x);
    n.sub.setAttribute("y", pos.y + 36);
    var caption;
    if (r.kind === "unknown") caption = r.up ? "unknown hop" : "unknown hop · no answer";
    else if (r.kind === "generator") caption = r.up ? "traffic" : "traffic · down";
    else if (!r.up) caption = "router · down";
    else caption = standby ? "router · standby" : "router";
    n.caption.textContent = caption;
    n.sub.textContent = r.versions && r.versions.length ? r.versions.map(vlabel).join(" / ") : (r.kind === "unknown" ? "" : "—");
    n.title.textContent = r.name + (r.error ? "\n" + r.error : "");
  }

  // Where the segment from the centre of a towards the centre of b leaves a's box.
  function edgePoint(a, b, pad) {
    var dx = b.x - a.x, dy = b.y - a.y;
    var hw = a.w / 2 + pad, hh = a.h / 2 + pad;
    var t = Math.min(dx ? hw / Math.abs(dx) : Infinity, dy ? hh / Math.abs(dy) : Infinity);
    return { x: a.x + dx * t, y: a.y + dy * t };
  }

  function dotCount(pps) {
    if (pps <= 0) return 0;
    if (pps < 2) return 1;
    if (pps < 10) return 2;
    if (pps < 50) return 3;
    return 4;
  }

  function setDots(l, count) {
    if (l.dotCount === count && l.dotPath === l.path) return;
    while (l.dots.firstChild) l.dots.removeChild(l.dots.firstChild);
    var dur = 1.6;
    for (var i = 0; i < count; i++) {
      var c = el("circle", { r: 7, "class": "dot" }, l.dots);
      el("animateMotion", {
        dur: dur + "s",
        repeatCount: "indefinite",
        begin: (-(dur * i) / count).toFixed(2) + "s",
        path: l.path
      }, c);
    }
    l.dotCount = count;
    l.dotPath = l.path;
  }

  function upsertLink(link, a, b) {
    var key = link.from + "->" + link.to;
    var l = links.get(key);
    if (!l) {
      var g = el("g", { "class": "link", "data-link": key }, linkLayer);
      l = {
        g: g,
        title: el("title", {}, g),
        line: el("path", { "class": "link-line" }, g),
        dots: el("g", { "class": "dots" }, g),
        label: el("text", {}, g)
      };
      l.rate = el("tspan", { "class": "rate" }, l.label);
      l.drops = el("tspan", { "class": "drops" }, l.label);
      links.set(key, l);
    }
    var p1 = edgePoint(a, b, 4), p2 = edgePoint(b, a, 10);
    l.path = "M" + p1.x.toFixed(1) + "," + p1.y.toFixed(1) + " L" + p2.x.toFixed(1) + "," + p2.y.toFixed(1);
    l.line.setAttribute("d", l.path);
    l.line.setAttribute("marker-end", "url(#arrow-" + link.state + ")");
    l.g.setAttribute("data-state", link.state);
    l.g.setAttribute("data-active", link.active ? "true" : "false");
    l.title.textContent = key + ": " + link.state + (link.active ? "" : " (no longer configured)");

    // Label beside the middle of the link, on its upper side (above the boxes for a level link).
    var dx = p2.x - p1.x, dy = p2.y - p1.y, len = Math.hypot(dx, dy) || 1;
    var nx = -dy / len, ny = dx / len;
    if (ny > 0 || (ny === 0 && nx > 0)) { nx = -nx; ny = -ny; }
    var off = 42 + 32 * Math.abs(dx / len);
    var mx = (p1.x + p2.x) / 2 + nx * off, my = (p1.y + p2.y) / 2 + ny * off;
    l.rate.setAttribute("x", mx.toFixed(1));
    l.rate.setAttribute("y", (my - 14).toFixed(1));
    l.drops.setAttribute("x", mx.toFixed(1));
    l.drops.setAttribute("y", (my + 14).toFixed(1));
    l.rate.textContent = fmtRate(link.packets_per_sec) + " pkt/s";
    l.drops.textContent = fmtRate(link.drops_per_sec) + " drops/s";
    l.drops.setAttribute("class", link.drops_per_sec > 0 ? "drops some" : "drops");
    setDots(l, link.state === "up" ? dotCount(link.packets_per_sec) : 0);
  }

  function render(t) {
    var seen = new Set();
    var extra = 0;
    // A router no configured link touches waits on standby (router-north before a re-route).
    var linked = new Set();
    // An unknown hop fades with its link once nothing is configured or moving towards it.
    var live = new Set();
    t.links.forEach(function (l) {
      if (l.active) { linked.add(l.from); linked.add(l.to); }
      if (l.state !== "gone") live.add(l.to);
    });
    t.routers.forEach(function (r) {
      var pos = LAYOUT[r.name];
      if (!pos) {
        var slot = extra++;
        pos = { x: EXTRA_SLOTS[slot % EXTRA_SLOTS.length], y: EXTRA_Y };
      }
      upsertNode(r, pos, !linked.has(r.name));
      nodes.get(r.name).g.classList.toggle("faded", r.kind === "unknown" && !live.has(r.name));
      seen.add(r.name);
    });
    nodes.forEach(function (n, name) {
      if (!seen.has(name)) { n.g.remove(); nodes.delete(name); }
    });

    var seenLinks = new Set();
    t.links.forEach(function (link) {
      var a = nodes.get(link.from), b = nodes.get(link.to);
      if (!a || !b) return;
      upsertLink(link, a, b);
      seenLinks.add(link.from + "->" + link.to);
    });
    links.forEach(function (l, key) {
      if (!seenLinks.has(key)) { l.g.remove(); links.delete(key); }
    });

    if (t.delivery_ratio === null || t.delivery_ratio === undefined) {
      delivery.textContent = "—";
      delivery.className = "";
      delivery.setAttribute("data-ratio", "");
    } else {
      var pct = t.delivery_ratio * 100;
      delivery.textContent = (pct >= 99.95 ? "100" : pct.toFixed(1)) + " %";
      delivery.className = pct >= 99 ? "good" : pct >= 95 ? "warn" : "bad";
      delivery.setAttribute("data-ratio", String(t.delivery_ratio));
    }
    badge.setAttribute("data-color", t.color);
    document.body.setAttribute("data-color", t.color);
    badge.querySelector(".badge-version").textContent = vlabel(t.version);
    badge.querySelector(".badge-color").textContent = t.color;

    setBanner(t.error ? "Metrics unavailable, showing the last picture: " + t.error : "");
    var when = t.updated_at ? new Date(t.updated_at).toLocaleTimeString() : "—";
    statusLine.textContent = t.mode + " mode · updated " + when;
    document.body.setAttribute("data-updated-at", t.updated_at || "");
  }

  function setBanner(text) {
    banner.textContent = text;
    banner.hidden = !text;
  }

  function tick() {
    fetch("api/topology", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (t) {
        failures = 0;
        if (t.poll_ms > 0) pollMs = t.poll_ms;
        render(t);
      })
      .catch(function (e) {
        failures++;
        if (failures >= 2) setBanner("Dashboard unreachable (" + e.message + "), retrying…");
      })
      .then(function () { setTimeout(tick, pollMs); });
  }

  tick();
})();
