'use strict';
// Switchboard worker helper for Node.js (no dependencies).
//
// Implements the worker side of the Switchboard worker gateway protocol:
// one JSON object per line on stdin (requests) and stdout (replies).
//
//   const { createWorker } = require('./runner-worker');
//   createWorker({
//     tasks:  { 'app.tasks.add': async (input, ctx) => input.a + input.b },
//     events: { 'app.events.notify': (payload, ctx) => { console.error(payload); } },
//   });
//
// Handlers get (input, ctx) where ctx = { id, context, signal } — context
// holds method, path, query, headers (and user/client for hub rpc); signal
// is an AbortSignal aborted when Switchboard cancels the request (timeout).
// A handler may return a value or a Promise. Throwing an Error replies
// {"ok":false,"error":{"message":err.message,"code":err.code||"EXECUTION_ERROR"}}.
//
// stdout belongs to the protocol: console.log/info/debug are redirected to
// stderr (which Switchboard logs with the worker pid) unless
// keepConsole: true is passed.

const EXECUTION_ERROR = 'EXECUTION_ERROR';

function createWorker(options) {
  const opts = options || {};
  const tasks = new Map(Object.entries(opts.tasks || {}));
  const events = new Map(Object.entries(opts.events || {}));
  const input = opts.input || process.stdin;
  const output = opts.output || process.stdout;
  const concurrency = opts.concurrency > 0 ? opts.concurrency : Infinity;
  const exit = opts.exit || ((code) => process.exit(code));

  if (!opts.keepConsole && output === process.stdout) {
    const toStderr = (...args) => console.error(...args);
    console.log = toStderr;
    console.info = toStderr;
    console.debug = toStderr;
  }

  // Replies are batched and written once per tick: fewer syscalls under load.
  let outBuf = [];
  let flushScheduled = false;
  function flush() {
    flushScheduled = false;
    if (outBuf.length === 0) return;
    const chunk = outBuf.join('');
    outBuf = [];
    output.write(chunk);
  }
  function send(obj) {
    let line;
    try {
      line = JSON.stringify(obj);
    } catch (err) {
      line = JSON.stringify({ id: obj.id, ok: false, error: { message: 'result is not JSON-serialisable: ' + err.message, code: EXECUTION_ERROR } });
    }
    outBuf.push(line + '\n');
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  }

  const running = new Map(); // id -> AbortController
  const waiting = []; // requests over the concurrency limit
  let active = 0;
  let closing = false;
  let shutdownId = null;

  function maybeExit() {
    if (closing && active === 0 && waiting.length === 0) {
      if (shutdownId !== null) send({ id: shutdownId, ok: true });
      flush();
      // Let stdout drain before exiting.
      if (output.writableLength > 0) output.once('drain', () => exit(0));
      else exit(0);
    }
  }

  function finish(id) {
    running.delete(id);
    active--;
    if (waiting.length > 0 && active < concurrency) start(waiting.shift());
    maybeExit();
  }

  function start(msg) {
    const isTask = msg.type === 'task';
    const name = isTask ? msg.taskId : msg.eventId;
    const handler = isTask ? tasks.get(name) : events.get(name);
    if (typeof handler !== 'function') {
      send({ id: msg.id, ok: false, error: { message: (isTask ? 'task ' : 'event ') + JSON.stringify(name) + ' not found', code: 'NOT_FOUND' } });
      return;
    }
    active++;
    const ac = new AbortController();
    running.set(msg.id, ac);
    const ctx = { id: msg.id, context: msg.context || {}, signal: ac.signal };
    let p;
    try {
      p = Promise.resolve(handler(isTask ? msg.input : msg.payload, ctx));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (result) => {
        if (!ac.signal.aborted) send(isTask && result !== undefined ? { id: msg.id, ok: true, result } : { id: msg.id, ok: true });
        finish(msg.id);
      },
      (err) => {
        if (!ac.signal.aborted) {
          const message = (err && err.message) || String(err);
          const code = (err && typeof err.code === 'string' && err.code) || EXECUTION_ERROR;
          send({ id: msg.id, ok: false, error: { message, code } });
        }
        finish(msg.id);
      },
    );
  }

  function onLine(line) {
    if (line.length === 0 || line === '\r') return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (err) {
      send({ id: 0, ok: false, error: { message: 'invalid JSON line', code: 'INVALID_REQUEST' } });
      return;
    }
    switch (msg && msg.type) {
      case 'task':
      case 'event':
        if (closing) {
          send({ id: msg.id, ok: false, error: { message: 'worker is shutting down', code: 'SHUTTING_DOWN' } });
        } else if (active < concurrency) {
          start(msg);
        } else {
          waiting.push(msg);
        }
        return;
      case 'ping':
        send({ id: msg.id, ok: true });
        return;
      case 'cancel': {
        const ac = running.get(msg.id);
        if (ac) ac.abort();
        const i = waiting.findIndex((m) => m.id === msg.id);
        if (i >= 0) waiting.splice(i, 1);
        return;
      }
      case 'shutdown':
        closing = true;
        shutdownId = msg.id;
        maybeExit();
        return;
      default:
        send({ id: (msg && msg.id) || 0, ok: false, error: { message: 'unknown message type', code: 'INVALID_REQUEST' } });
    }
  }

  let rest = '';
  input.setEncoding('utf8');
  input.on('data', (chunk) => {
    let start = 0;
    let nl;
    const data = rest.length > 0 ? rest + chunk : chunk;
    rest = '';
    while ((nl = data.indexOf('\n', start)) !== -1) {
      onLine(data.slice(start, nl));
      start = nl + 1;
    }
    if (start < data.length) rest = data.slice(start);
  });
  input.on('end', () => {
    if (rest.length > 0) onLine(rest);
    closing = true;
    maybeExit();
  });

  if (opts.announce !== false) {
    send({ type: 'ready', tasks: [...tasks.keys()], events: [...events.keys()] });
  }
  return { tasks, events, send };
}

module.exports = { createWorker };
