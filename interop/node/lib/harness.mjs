// Test harness for the Node interop suite: builds and boots the real
// switchboard binary, signs connect tokens, calls the server HTTP API and
// gives WebSocket constructors that trace frames and can hold reconnects.
//
// Kept outside test/ so that `node --test` does not run it as a test file.

import { spawn, execFile } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root: interop/node/lib → ../../.. */
export const repoRoot = path.resolve(here, '..', '..', '..');

export const SECRET = 'interop-secret';
export const API_KEY = 'interop-api-key';

/** Default wait for any awaited condition. */
export const TIMEOUT_MS = 10_000;

/** Config in Centrifugo v6 key names; "chat" is fully featured, "locked" allows nothing. */
export function serverConfig() {
  return {
    http_server: { port: 0 },
    client: { token: { hmac_secret_key: SECRET }, allowed_origins: ['*'] },
    http_api: { key: API_KEY },
    channel: {
      without_namespace: { allow_subscribe_for_client: true },
      namespaces: [
        {
          name: 'chat',
          presence: true,
          join_leave: true,
          force_push_join_leave: true,
          history_size: 100,
          history_ttl: '300s',
          force_recovery: true,
          allow_subscribe_for_client: true,
          allow_publish_for_subscriber: true,
          allow_presence_for_subscriber: true,
          allow_history_for_subscriber: true,
        },
        { name: 'locked' },
      ],
    },
  };
}

/** INTEROP_ENGINE=redis runs the suites on the Redis engine. */
export const REDIS_MODE = process.env.INTEROP_ENGINE === 'redis';

/** The test Redis: SWITCHBOARD_TEST_REDIS_URL or redis://127.0.0.1:6379/0. */
export function redisURL() {
  return process.env.SWITCHBOARD_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';
}

/** Resolves with null when the test Redis accepts TCP connections, else with the reason. */
export function redisUnreachable(url = redisURL(), ms = 2000) {
  const u = new URL(url);
  const port = Number(u.port || 6379);
  return new Promise((resolve) => {
    const sock = netConnect({ host: u.hostname, port });
    const done = (why) => {
      sock.destroy();
      resolve(why);
    };
    sock.setTimeout(ms, () => done(`no answer from ${u.hostname}:${port} within ${ms} ms`));
    sock.once('connect', () => done(null));
    sock.once('error', (e) => done(`${u.hostname}:${port}: ${e.message}`));
  });
}

/**
 * The Redis engine section for serverConfig(): the test Redis under a fresh
 * key prefix, so runs never see each other's history or presence. Processes
 * given the same section behave as one server.
 */
export function redisEngine(prefix = `interop.${randomBytes(6).toString('hex')}`) {
  return { type: 'redis', redis: { address: redisURL(), prefix } };
}

/**
 * Starts `switchboard serve -c cfg.json` from SWITCHBOARD_BIN or a fresh
 * `go build` and resolves once the first stdout line names the address.
 * With `args`, runs `switchboard ...args` instead and writes no config
 * (e.g. `['serve', '--dev', '--port', '0']`).
 */
export async function startServer(config = serverConfig(), { args } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-interop-'));
  let bin = process.env.SWITCHBOARD_BIN;
  if (bin) {
    bin = path.resolve(bin);
    await access(bin);
  } else {
    bin = path.join(dir, 'switchboard');
    try {
      await promisify(execFile)('go', ['build', '-o', bin, './cmd/switchboard'], {
        cwd: repoRoot,
        timeout: 300_000,
        maxBuffer: 16 << 20,
      });
    } catch (e) {
      throw new Error(`go build failed in ${repoRoot}: ${e.message}\n${e.stderr ?? ''}`);
    }
  }
  if (!args) {
    const cfgPath = path.join(dir, 'cfg.json');
    await writeFile(cfgPath, JSON.stringify(config, null, 2));
    args = ['serve', '-c', cfgPath];
  }

  // The server reads SWITCHBOARD_* variables as config and rejects unknown
  // ones (SWITCHBOARD_BIN among them): start it with none, so that only
  // cfg.json counts.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });

  // One listener from the start: readline emits every line of a chunk at
  // once, so a listener added after awaiting the first line would miss some.
  // Lines after the first are kept for waitLine.
  const lines = createInterface({ input: proc.stdout });
  const later = [];
  const lineWaiters = new Set();
  let gotFirst;
  const firstLine = new Promise((resolve) => {
    gotFirst = resolve;
  });
  let seenFirst = false;
  lines.on('line', (l) => {
    if (!seenFirst) {
      seenFirst = true;
      gotFirst(l);
      return;
    }
    later.push(l);
    for (const w of lineWaiters) w();
  });
  const first = await withTimeout(
    new Promise((resolve, reject) => {
      firstLine.then(resolve);
      proc.once('exit', (code, signal) =>
        reject(new Error(`server exited before listening (code=${code} signal=${signal})`)),
      );
      proc.once('error', reject);
    }),
    TIMEOUT_MS,
    'server listening line',
  ).catch((e) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\nstderr:\n${stderr}`);
  });
  const m = /listening on (http:\/\/[^\s]+)/.exec(first);
  if (!m) {
    proc.kill('SIGKILL');
    throw new Error(`unexpected first stdout line: ${JSON.stringify(first)}`);
  }
  const httpURL = m[1];
  const wsURL = httpURL.replace(/^http/, 'ws') + '/connection/websocket';

  return {
    httpURL,
    wsURL,
    stderr: () => stderr,
    /** Stdout lines after the first one, so far. */
    lines: () => [...later],
    /** Resolves with the first stdout line after the first one that satisfies pred. */
    waitLine(pred, what = 'stdout line') {
      return withTimeout(
        new Promise((resolve) => {
          const check = () => {
            const l = later.find(pred);
            if (l !== undefined) {
              lineWaiters.delete(check);
              resolve(l);
            }
          };
          lineWaiters.add(check);
          check();
        }),
        TIMEOUT_MS,
        what,
      );
    },
    /** POST /api/{method}; resolves with {status, body}. */
    async api(method, body) {
      return this.apiRaw(method, JSON.stringify(body));
    },
    /** POST /api/{method} with a raw body (string or bytes, e.g. not UTF-8). */
    async apiRaw(method, raw) {
      const res = await fetch(`${httpURL}/api/${method}`, {
        method: 'POST',
        headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
        body: raw,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      const text = await res.text();
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new Error(`/api/${method}: HTTP ${res.status}, non-JSON body ${JSON.stringify(text)}`);
      }
      return { status: res.status, body: parsed };
    },
    /** Sends SIGTERM and resolves with the exit {code, signal}; removes the temp dir. */
    async stop() {
      proc.kill('SIGTERM');
      try {
        return await withTimeout(exited, 15_000, 'server exit after SIGTERM');
      } catch (e) {
        proc.kill('SIGKILL');
        throw e;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Signs an HS256 JWT. */
export function signHS256(claims, secret = SECRET) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = createHmac('sha256', secret).update(unsigned).digest('base64url');
  return `${unsigned}.${sig}`;
}

/** A connect token for user valid for ttlSec seconds (negative: already expired). */
export function connectToken(user, { ttlSec = 3600, info } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, iat: now - (ttlSec < 0 ? 2 * -ttlSec : 0), exp: now + ttlSec };
  if (info !== undefined) claims.info = info;
  return signHS256(claims);
}

/** Rejects with a descriptive error when p does not settle within ms. */
export function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls cond (sync or async) until it returns a truthy value. */
export async function eventually(cond, what, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Records events of Centrifuge clients and subscriptions and lets tests
 * await a condition over them.
 */
export class Recorder {
  constructor() {
    this.events = [];
    this.waiters = new Set();
  }

  /** Records every event in names emitted by emitter, as prefix + name. */
  attach(emitter, names, prefix = '') {
    for (const name of names) emitter.on(name, (ctx) => this.push(prefix + name, ctx));
    return this;
  }

  push(name, ctx) {
    this.events.push({ name, ctx });
    for (const w of [...this.waiters]) w();
  }

  /** Contexts of the events called name, in order. */
  of(name) {
    return this.events.filter((e) => e.name === name).map((e) => e.ctx);
  }

  /** Resolves with the first truthy fn() result, evaluated now and after each event. */
  until(what, fn, ms = TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try {
          v = fn(this);
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.events.map((e) => e.name).join(', ');
        reject(new Error(`timeout after ${ms} ms waiting for ${what}; events seen: [${seen}]`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the context of the n-th (1-based) event called name. */
  nth(name, n = 1, ms = TIMEOUT_MS) {
    return this.until(`${n} × '${name}'`, (r) => r.of(name)[n - 1], ms);
  }
}

/** A gate that holds new WebSocket connections while closed. */
export class Gate {
  constructor() {
    this._open = true;
    this._waiters = [];
  }
  close() {
    this._open = false;
  }
  open() {
    this._open = true;
    for (const w of this._waiters.splice(0)) w();
  }
  wait() {
    return this._open ? Promise.resolve() : new Promise((r) => this._waiters.push(r));
  }
}

function describeFrame(data) {
  if (typeof data === 'string') return data;
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data instanceof ArrayBuffer ? data : data.buffer ?? data);
  const text = buf.toString('utf8');
  // Protobuf frames: hex, plus the printable bytes for a human reader.
  return `hex:${buf.toString('hex')} text:${JSON.stringify(text.replace(/[^\x20-\x7e]/g, '.'))}`;
}

/**
 * Returns a WebSocket-compatible constructor (for the Centrifuge `websocket`
 * option) over the `ws` package that appends every frame to trace and opens
 * its connection only when gate is open. With target, each connection goes
 * to target() (a node chosen at connect time) instead of the client's URL;
 * sockets, a Set, holds the open ones (terminate one to cut the network).
 */
export function tracingWebSocket(trace, gate = new Gate(), { target, sockets } = {}) {
  const t0 = Date.now();
  const log = (dir, data) => trace.push(`${String(Date.now() - t0).padStart(5)}ms ${dir} ${describeFrame(data)}`);
  return class TracingWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols) {
      this.url = url;
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      this._binaryType = 'nodebuffer';
      this._ws = null;
      this._closedEarly = false;
      gate.wait().then(() => {
        if (target) url = target();
        if (this._closedEarly) {
          this.onclose?.({ code: 1006, reason: 'closed before open', wasClean: false });
          return;
        }
        log('open', `${url} ${protocols ?? ''}`);
        const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
        ws.binaryType = this._binaryType;
        ws.onopen = (e) => this.onopen?.(e);
        ws.onmessage = (e) => {
          log('←', e.data);
          this.onmessage?.(e);
        };
        ws.onerror = (e) => {
          log('error', String(e.message ?? e.error ?? e));
          this.onerror?.(e);
        };
        ws.onclose = (e) => {
          log('close', `${e.code} ${e.reason}`);
          this.onclose?.(e);
        };
        this._ws = ws;
        sockets?.add(ws);
        ws.once('close', () => sockets?.delete(ws));
      });
    }

    get binaryType() {
      return this._binaryType;
    }
    set binaryType(v) {
      this._binaryType = v;
      if (this._ws) this._ws.binaryType = v;
    }
    get readyState() {
      return this._ws ? this._ws.readyState : this._closedEarly ? 3 : 0;
    }
    get protocol() {
      return this._ws ? this._ws.protocol : '';
    }
    send(data) {
      log('→', data);
      this._ws.send(data);
    }
    close(code, reason) {
      if (this._ws) this._ws.close(code, reason);
      else this._closedEarly = true;
    }
  };
}

/** JSON value of publication data: a parsed object (JSON) or bytes holding JSON (protobuf). */
export function decodeData(data) {
  if (data instanceof Uint8Array) return JSON.parse(Buffer.from(data).toString('utf8'));
  return data;
}
