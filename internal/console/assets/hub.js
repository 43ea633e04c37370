// A small client of the Centrifugo JSON protocol (v2), written for the
// Switchboard console: it connects with a token whose "channels" claim
// subscribes it server-side, answers pings, refreshes its token before it
// expires, reconnects with exponential backoff and jitter, and recovers
// missed publications of channels that keep history (it sends each
// channel's last epoch and offset with the next connect).
//
// Usage:
//   const hub = new HubClient({
//     getToken: async () => ({token, url}),   // throws to stop (signed out)
//     onPublication: (channel, data, pub) => {},
//     onState: (state, detail) => {},          // connecting|connected|disconnected|stopped
//                                              // (stopped: by stop(), or by a terminal
//                                              // disconnect code 3500-3999 / 4500-4999)
//     onConnected: (connectResult) => {},      // after every (re)connect
//     onRefreshed: (refreshResult) => {},      // after every token refresh
//   });
//   hub.start(); hub.stop();
"use strict";

class HubClient {
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();   // command id -> {resolve, reject}
    this.positions = new Map(); // channel -> {epoch, offset} of recoverable subscriptions
    this.attempt = 0;
    this.stopped = true;
    this.timers = {reconnect: 0, ping: 0, refresh: 0};
    this.pingWindowMs = 0;
    this.minBackoffMs = opts.minBackoffMs || 300;
    this.maxBackoffMs = opts.maxBackoffMs || 20000;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this._dial();
  }

  stop() {
    this.stopped = true;
    this._clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000, "client stop"); } catch (e) { /* already closed */ }
    }
    this._failPending(new Error("client stopped"));
    this._state("stopped");
  }

  _state(s, detail) {
    this.state = s;
    if (this.opts.onState) this.opts.onState(s, detail || "");
  }

  _clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = 0;
    }
  }

  _failPending(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async _dial() {
    if (this.stopped) return;
    this._state("connecting", this.attempt ? "attempt " + (this.attempt + 1) : "");
    let creds;
    try {
      creds = await this.opts.getToken();
    } catch (e) {
      if (e && e.signedOut) { this.stop(); return; }
      this._scheduleReconnect("token: " + (e && e.message || e));
      return;
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(creds.url);
    } catch (e) {
      this._scheduleReconnect("dial: " + e.message);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._sendConnect(ws, creds.token);
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onerror = () => { /* onclose follows with the reason */ };
    ws.onclose = (ev) => this._onClose(ws, ev);
  }

  _sendConnect(ws, token) {
    const subs = {};
    for (const [ch, pos] of this.positions) {
      subs[ch] = {recover: true, epoch: pos.epoch, offset: pos.offset};
    }
    const req = {token: token, name: "switchboard-console"};
    if (Object.keys(subs).length) req.subs = subs;
    this._command(ws, "connect", req).then(
      (res) => this._onConnected(ws, res),
      (err) => {
        // A refused connect (bad or expired token, limits): close and try
        // again with a fresh token after the backoff.
        if (ws === this.ws) {
          try { ws.close(1000, "connect refused"); } catch (e) { /* closed */ }
        }
        this._lastError = "connect refused: " + err.message;
      });
  }

  _command(ws, method, params) {
    const id = this.nextId++;
    const cmd = {id: id};
    cmd[method] = params;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {resolve, reject});
      try {
        ws.send(JSON.stringify(cmd));
      } catch (e) {
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  _onConnected(ws, res) {
    if (ws !== this.ws) return;
    this.attempt = 0;
    // Pings come every res.ping seconds; allow the pong window on top.
    this.pingWindowMs = res.ping ? (res.ping * 1000 + 10000) : 0;
    this._armPingCheck();
    const subs = res.subs || {};
    for (const ch of Object.keys(subs)) this._onSubscribed(ch, subs[ch]);
    if (res.expires && res.ttl) this._scheduleRefresh(res.ttl);
    this._state("connected", res.client || "");
    if (this.opts.onConnected) this.opts.onConnected(res);
  }

  _onSubscribed(ch, sr) {
    if (sr.recoverable) {
      this.positions.set(ch, {epoch: sr.epoch || "", offset: sr.offset || 0});
    }
    for (const pub of sr.publications || []) this._onPub(ch, pub);
  }

  _armPingCheck() {
    clearTimeout(this.timers.ping);
    if (!this.pingWindowMs) return;
    this.timers.ping = setTimeout(() => {
      if (this.ws) {
        this._lastError = "no ping from the server";
        try { this.ws.close(4000, "no ping"); } catch (e) { /* closed */ }
      }
    }, this.pingWindowMs);
  }

  _scheduleRefresh(ttlSeconds) {
    clearTimeout(this.timers.refresh);
    const ms = Math.max(1000, (ttlSeconds - 15) * 1000);
    this.timers.refresh = setTimeout(async () => {
      const ws = this.ws;
      if (!ws || this.stopped) return;
      try {
        const creds = await this.opts.getToken();
        const res = await this._command(ws, "refresh", {token: creds.token});
        if (res.expires && res.ttl) this._scheduleRefresh(res.ttl);
        if (this.opts.onRefreshed) this.opts.onRefreshed(res);
      } catch (e) {
        if (e && e.signedOut) { this.stop(); return; }
        // The server closes the connection when the token expires; the
        // reconnect then fetches a fresh one.
        this._scheduleRefresh(30);
      }
    }, ms);
  }

  _onFrame(ws, text) {
    if (ws !== this.ws) return;
    this._armPingCheck();
    for (const line of String(text).split("\n")) {
      if (line.trim() === "") continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        this._lastError = "bad frame from the server";
        continue;
      }
      this._onMessage(ws, msg);
    }
  }

  _onMessage(ws, msg) {
    if (msg.id) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) {
        const err = new Error(msg.error.message || ("error " + msg.error.code));
        err.code = msg.error.code;
        p.reject(err);
      } else {
        for (const k of Object.keys(msg)) {
          if (k !== "id") { p.resolve(msg[k]); return; }
        }
        p.resolve({});
      }
      return;
    }
    if (msg.push) {
      this._onPush(msg.push);
      return;
    }
    // An empty object is the server's ping: answer with a pong.
    if (Object.keys(msg).length === 0) {
      try { ws.send("{}"); } catch (e) { /* closing */ }
    }
  }

  _onPush(push) {
    const ch = push.channel || "";
    if (push.pub) {
      this._onPub(ch, push.pub);
    } else if (push.subscribe) {
      this._onSubscribed(ch, push.subscribe);
    } else if (push.unsubscribe) {
      this.positions.delete(ch);
    } else if (push.disconnect) {
      this._lastError = "disconnected: " + push.disconnect.reason + " (" + push.disconnect.code + ")";
    }
  }

  _onPub(ch, pub) {
    const pos = this.positions.get(ch);
    if (pos && pub.offset) pos.offset = pub.offset;
    if (this.opts.onPublication) this.opts.onPublication(ch, pub.data, pub);
  }

  _onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.timers.ping);
    clearTimeout(this.timers.refresh);
    this._failPending(new Error("connection closed"));
    if (this.stopped) return;
    const why = this._lastError || (ev.reason ? ev.reason + " (" + ev.code + ")" : "closed (" + ev.code + ")");
    this._lastError = "";
    // Centrifugo's terminal codes: the server says not to come back.
    if ((ev.code >= 3500 && ev.code < 4000) || (ev.code >= 4500 && ev.code < 5000)) {
      this.stopped = true;
      this._clearTimers();
      this._state("stopped", why);
      return;
    }
    this._scheduleReconnect(why);
  }

  _scheduleReconnect(why) {
    if (this.stopped) return;
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * Math.pow(2, this.attempt));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this.attempt++;
    this._state("disconnected", why + "; reconnecting in " + (delay / 1000).toFixed(1) + " s");
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => this._dial(), delay);
  }
}

window.HubClient = HubClient;
