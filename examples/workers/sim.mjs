#!/usr/bin/env node
// Seeded Monte-Carlo damage simulation: a worker for `switchboard node`.
//
// Speaks the worker gateway's stdio protocol (one JSON object per line, see
// docs/worker-gateway.md) without dependencies. Each task "chunk" gets a
// chunk assignment {"id","jobId","leaseId","iterations","configHash",
// "config","seedOffset",...} and returns {iterations, meanDps, stdDps,
// minDps, maxDps}. Same input, same output, bit for bit; identical to
// sim.py (the algorithm is in README.md).
//
//   switchboard node --server http://127.0.0.1:8000 --worker "node sim.mjs"
import { createInterface } from 'node:readline';

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9E3779B97F4A7C15n;
const MAX_ATTACKS = 100000;
const PROGRESS_EVERY = 100;
const SLICE = 25; // iterations between yields to the event loop (pings, cancels)

const DEFAULTS = {
  duration: 60, attacksPerSecond: 1, baseDamage: 100, damageSpread: 0.1,
  hitChance: 0.95, critChance: 0.2, critMultiplier: 2, sleepMs: 0, crashAt: -1,
};

class SimError extends Error {
  constructor(message, code = 'INVALID_CONFIG') { super(message); this.code = code; }
}

function mix(z) {
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK;
  return z ^ (z >> 31n);
}

// splitmix64 seeded per iteration: state = mix(base + (index+1)*GAMMA).
class Rng {
  constructor(base, index) { this.state = mix((base + (BigInt(index) + 1n) * GAMMA) & MASK); }
  uniform() {
    this.state = (this.state + GAMMA) & MASK;
    return Number(mix(this.state) >> 11n) / 9007199254740992;
  }
}

export function settings(config) {
  if (config === undefined || config === null) config = {};
  if (typeof config !== 'object' || Array.isArray(config)) throw new SimError('config must be an object');
  const s = {};
  for (const [k, d] of Object.entries(DEFAULTS)) {
    const v = Object.hasOwn(config, k) ? config[k] : d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new SimError(`config.${k} must be a finite number`);
    s[k] = v;
  }
  if (s.duration <= 0) throw new SimError('config.duration must be positive');
  s.attacks = Math.floor(s.duration * s.attacksPerSecond);
  if (s.attacks < 1 || s.attacks > MAX_ATTACKS) {
    throw new SimError(`config.duration * config.attacksPerSecond must give 1..${MAX_ATTACKS} attacks`);
  }
  return s;
}

function seedBase(configHash) {
  if (typeof configHash !== 'string' || configHash.length < 16 || !/^[0-9a-fA-F]{16}/.test(configHash)) {
    throw new SimError('configHash must be a hex string of at least 16 characters', 'INVALID_INPUT');
  }
  return BigInt('0x' + configHash.slice(0, 16));
}

function iterationDps(s, rng) {
  let total = 0;
  const lo = s.baseDamage * (1 - s.damageSpread);
  const width = s.baseDamage * 2 * s.damageSpread;
  for (let a = 0; a < s.attacks; a++) {
    if (rng.uniform() < s.hitChance) {
      let d = lo + width * rng.uniform();
      if (rng.uniform() < s.critChance) d = d * s.critMultiplier;
      total = total + d;
    }
  }
  return total / s.duration;
}

const pause = (ms) => new Promise((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));

// simulate runs a chunk; it yields to the event loop every SLICE iterations
// (and sleeps sleepMs per iteration) so pings and cancels are answered.
export async function simulate(chunk, progress = () => {}, cancelled = () => false) {
  if (typeof chunk !== 'object' || chunk === null) throw new SimError('input must be a chunk object', 'INVALID_INPUT');
  const n = chunk.iterations;
  const off = chunk.seedOffset ?? 0;
  if (!Number.isSafeInteger(n) || n <= 0) throw new SimError('iterations must be a positive integer', 'INVALID_INPUT');
  if (!Number.isSafeInteger(off) || off < 0) throw new SimError('seedOffset must be a non-negative integer', 'INVALID_INPUT');
  const s = settings(chunk.config);
  const base = seedBase(chunk.configHash);
  const values = [];
  for (let i = 0; i < n; i++) {
    if (cancelled()) return null;
    if (s.crashAt >= 0 && off + i === Math.trunc(s.crashAt)) {
      process.stderr.write(`sim: crashing at iteration ${off + i} as configured (crashAt)\n`);
      process.exit(3);
    }
    if (s.sleepMs > 0) await pause(s.sleepMs);
    else if (i % SLICE === 0 && i > 0) await pause(0);
    values.push(iterationDps(s, new Rng(base, off + i)));
    if ((i + 1) % PROGRESS_EVERY === 0 && i + 1 < n) progress(i + 1);
  }
  let total = 0;
  for (const v of values) total = total + v;
  const mean = total / n;
  let sq = 0;
  for (const v of values) sq = sq + (v - mean) * (v - mean);
  let min = values[0];
  let max = values[0];
  for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
  return { iterations: n, meanDps: mean, stdDps: n > 1 ? Math.sqrt(sq / (n - 1)) : 0, minDps: min, maxDps: max };
}

function serve() {
  const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
  const running = new Map(); // request id -> {cancelled}
  let calls = 0;
  let shutdownId = null;
  const maybeExit = () => {
    if (shutdownId !== null && running.size === 0) {
      send({ id: shutdownId, ok: true });
      process.exit(0);
    }
  };
  console.log = (...a) => process.stderr.write(a.join(' ') + '\n'); // stdout is for protocol lines
  send({ type: 'ready', tasks: ['chunk'], events: [] });
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let msg;
    try { msg = JSON.parse(line); } catch {
      send({ id: 0, ok: false, error: { message: 'unparseable line', code: 'INVALID_REQUEST' } });
      return;
    }
    const id = msg.id;
    switch (msg.type) {
      case 'ping': send({ id, ok: true }); break;
      case 'task': {
        const st = { cancelled: false };
        running.set(id, st);
        (async () => {
          if (msg.taskId !== 'chunk') throw new SimError(`no task "${msg.taskId}" (this worker runs "chunk")`, 'NOT_FOUND');
          return simulate(msg.input,
            (done) => send({ type: 'call', id, call: ++calls, method: 'progress', params: { done } }),
            () => st.cancelled);
        })().then((result) => {
          if (result !== null) send({ id, ok: true, result });
        }, (e) => {
          send({ id, ok: false, error: { message: e instanceof SimError ? e.message : `sim failed: ${e.message}`, code: e.code || 'EXECUTION_ERROR' } });
        }).finally(() => { running.delete(id); maybeExit(); });
        break;
      }
      case 'cancel': { const st = running.get(id); if (st) st.cancelled = true; break; }
      case 'event': send({ id, ok: false, error: { message: 'no events here', code: 'NOT_FOUND' } }); break;
      case 'shutdown': shutdownId = id; rl.close(); maybeExit(); break;
      default: break; // callReply and unknown types need no answer
    }
  });
  // stdin closed without a shutdown: the node is gone, nobody can take a
  // result any more.
  rl.on('close', () => { if (shutdownId === null) process.exit(0); });
}

if (process.argv[2] === '--once') {
  let buf = '';
  process.stdin.on('data', (d) => { buf += d; });
  process.stdin.on('end', async () => { console.log(JSON.stringify(await simulate(JSON.parse(buf)))); });
} else {
  serve();
}
