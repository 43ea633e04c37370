// Interop across processes: three `switchboard serve` processes on one
// Redis (the Redis engine, a key prefix of this run's own) behave as one
// server to the official npm `centrifuge` client spread over them.
//
// Runs with INTEROP_ENGINE=redis (`npm run test:redis`) against
// SWITCHBOARD_TEST_REDIS_URL or redis://127.0.0.1:6379/0; skipped otherwise,
// or when that Redis does not answer.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Centrifuge } from 'centrifuge';

import {
  Gate,
  REDIS_MODE,
  Recorder,
  connectToken,
  decodeData,
  eventually,
  redisEngine,
  redisUnreachable,
  serverConfig,
  startServer,
  tracingWebSocket,
} from '../lib/harness.mjs';

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];

const skip = REDIS_MODE
  ? await redisUnreachable().then((why) => (why ? `the test Redis is unreachable: ${why}` : false))
  : 'three processes on Redis: run with INTEROP_ENGINE=redis (npm run test:redis)';

/** Nodes A, B, C. */
let nodes = [];
const liveClients = new Set();

before(async () => {
  if (skip) return;
  const engine = redisEngine();
  nodes = await Promise.all([0, 1, 2].map(() => startServer({ ...serverConfig(), engine })));
});

after(async () => {
  for (const c of liveClients) c.disconnect();
  liveClients.clear();
  const exits = await Promise.all(nodes.map((n) => n.stop()));
  nodes.forEach((n, i) =>
    assert.deepEqual(exits[i], { code: 0, signal: null }, `node ${'ABC'[i]} exit; stderr:\n${n.stderr()}`),
  );
});

const A = () => nodes[0];
const B = () => nodes[1];
const C = () => nodes[2];

/**
 * A JSON client connecting to node() (re-evaluated at every connect, so a
 * test can move it); its open sockets are in c.sockets.
 */
function newClient(user, node, opts = {}) {
  const trace = [];
  const gate = new Gate();
  const sockets = new Set();
  const c = { trace, gate, sockets, node };
  const client = new Centrifuge(node().wsURL, {
    websocket: tracingWebSocket(trace, gate, { target: () => c.node().wsURL, sockets }),
    name: 'node-interop-multinode',
    token: connectToken(user),
    timeout: 5000,
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
    ...opts,
  });
  c.client = client;
  c.rec = new Recorder().attach(client, CLIENT_EVENTS);
  liveClients.add(client);
  return c;
}

function subscribe(c, channel, opts) {
  const sub = c.client.newSubscription(channel, opts);
  const rec = new Recorder().attach(sub, SUB_EVENTS);
  sub.subscribe();
  return { sub, rec };
}

/** Runs body; on failure appends the frames of the clients it created. */
function traced(body) {
  return async (t) => {
    const clients = [];
    const track = (c) => {
      clients.push(c);
      return c;
    };
    try {
      await body(track, t);
    } catch (e) {
      e.message += '\n' + clients.map((c, i) => `client #${i + 1} frames:\n  ${c.trace.join('\n  ')}`).join('\n');
      throw e;
    } finally {
      for (const c of clients) {
        c.client.disconnect();
        liveClients.delete(c.client);
      }
    }
  };
}

async function apiOK(node, method, body) {
  const r = await node.api(method, body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(r.body.result, `${method}: ${JSON.stringify(r.body)}`);
  return r.body.result;
}

const texts = (rec) => rec.of('publication').map((p) => decodeData(p.data).text);

// The node count a control plane reports; computed once. Without one each
// process lists only itself.
let nodeCount;
async function nodesInInfo() {
  nodeCount ??= (async () => {
    let n = 0;
    await eventually(
      async () => {
        n = (await apiOK(C(), 'info', {})).nodes?.length ?? 0;
        return n > 1;
      },
      'info listing more than one node',
      6000,
    ).catch(() => {});
    return n;
  })();
  return nodeCount;
}
const NO_CONTROL_PLANE = 'info lists one node: this build has no control plane between processes';

describe('three processes on one Redis', { skip }, () => {
  it(
    'an API publication on B reaches subscribers on A and C; client publish across nodes; history',
    { timeout: 30_000 },
    traced(async (track) => {
      const room = 'chat:mn-room';
      const onA = track(newClient('alice', A));
      const onC = track(newClient('carol', C));
      const subA = subscribe(onA, room);
      const subC = subscribe(onC, room);
      onA.client.connect();
      onC.client.connect();
      const [sa, sc] = await Promise.all([subA.rec.nth('subscribed'), subC.rec.nth('subscribed')]);
      assert.equal(sa.streamPosition.epoch, sc.streamPosition.epoch, 'one stream for every node');

      const res = await apiOK(B(), 'publish', { channel: room, data: { text: 'from B' } });
      assert.equal(res.offset, 1);
      for (const s of [subA, subC]) {
        const p = await s.rec.nth('publication', 1);
        assert.deepEqual(decodeData(p.data), { text: 'from B' });
        assert.equal(p.offset, 1);
      }

      // A client on A publishes; the subscriber on C gets it with publisher info.
      await subA.sub.publish({ text: 'from alice' });
      const p2 = await subC.rec.nth('publication', 2);
      assert.deepEqual(decodeData(p2.data), { text: 'from alice' });
      assert.equal(p2.offset, 2);
      assert.equal(p2.info?.user, 'alice');
      await subA.rec.nth('publication', 2);

      // History read on C and through the API on A.
      const hist = await subC.sub.history({ limit: 10 });
      assert.equal(hist.epoch, sa.streamPosition.epoch);
      assert.deepEqual(
        hist.publications.map((p) => [p.offset, decodeData(p.data).text]),
        [
          [1, 'from B'],
          [2, 'from alice'],
        ],
      );
      const apiHist = await apiOK(A(), 'history', { channel: room, limit: -1 });
      assert.equal(apiHist.offset, 2);
      assert.equal(apiHist.publications.length, 2);

      // Each publication arrived once on each node.
      assert.deepEqual(texts(subA.rec), ['from B', 'from alice']);
      assert.deepEqual(texts(subC.rec), ['from B', 'from alice']);
    }),
  );

  it(
    'join/leave and presence across nodes',
    { timeout: 30_000 },
    traced(async (track) => {
      const room = 'chat:mn-presence';
      const onA = track(newClient('ann', A));
      const subA = subscribe(onA, room);
      onA.client.connect();
      const aConn = await onA.rec.nth('connected');
      await subA.rec.nth('subscribed');

      const onC = track(newClient('cid', C));
      const subC = subscribe(onC, room);
      onC.client.connect();
      const cConn = await onC.rec.nth('connected');
      await subC.rec.nth('subscribed');
      const join = await subA.rec.until('join of cid on A', (r) => r.of('join').find((j) => j.info.user === 'cid'));
      assert.equal(join.info.client, cConn.client);

      const pres = await subA.sub.presence();
      assert.deepEqual(Object.keys(pres.clients).sort(), [aConn.client, cConn.client].sort());
      const stats = await onC.client.presenceStats(room);
      assert.deepEqual({ ...stats }, { numClients: 2, numUsers: 2 });
      const apiPres = await apiOK(B(), 'presence', { channel: room });
      assert.deepEqual(Object.keys(apiPres.presence).sort(), [aConn.client, cConn.client].sort());

      subC.sub.unsubscribe();
      const leave = await subA.rec.until('leave of cid on A', (r) => r.of('leave').find((l) => l.info.user === 'cid'));
      assert.equal(leave.info.client, cConn.client);
      await eventually(async () => {
        const s = await apiOK(B(), 'presence_stats', { channel: room });
        return s.num_clients === 1;
      }, 'presence of one client after the leave');
    }),
  );

  it(
    'recovers missed publications after reconnecting to a different node',
    { timeout: 30_000 },
    traced(async (track) => {
      const channel = 'chat:mn-recover';
      let target = A;
      const dora = track(newClient('dora', () => target()));
      const sub = subscribe(dora, channel);
      dora.client.connect();
      const first = await sub.rec.nth('subscribed', 1);
      assert.equal(first.recoverable, true);
      await apiOK(B(), 'publish', { channel, data: { text: 'p1' } });
      await sub.rec.nth('publication', 1);

      // Cut the connection to A and hold the reconnect while B publishes.
      dora.gate.close();
      target = C;
      assert.equal(dora.sockets.size, 1);
      for (const ws of dora.sockets) ws.terminate();
      await sub.rec.until('subscribing after the cut', (r) => r.of('subscribing').length >= 2);
      for (const text of ['p2', 'p3', 'p4']) await apiOK(B(), 'publish', { channel, data: { text } });
      dora.gate.open();

      const again = await sub.rec.nth('subscribed', 2);
      assert.equal(again.wasRecovering, true, 'subscribed.wasRecovering');
      assert.equal(again.recovered, true, 'subscribed.recovered');
      assert.equal(again.streamPosition.epoch, first.streamPosition.epoch);
      assert.ok(dora.trace.some((l) => l.includes(`open ${C().wsURL}`)), 'the reconnect went to C');
      await sub.rec.until('4 publications', (r) => r.of('publication').length >= 4);
      assert.deepEqual(
        sub.rec.of('publication').map((p) => [p.offset, decodeData(p.data).text]),
        [
          [1, 'p1'],
          [2, 'p2'],
          [3, 'p3'],
          [4, 'p4'],
        ],
      );
      await apiOK(A(), 'publish', { channel, data: { text: 'p5' } });
      const p5 = await sub.rec.nth('publication', 5);
      assert.equal(p5.offset, 5);
    }),
  );

  it(
    'info lists the three nodes',
    { timeout: 30_000 },
    traced(async (_track, t) => {
      if ((await nodesInInfo()) <= 1) return t.skip(NO_CONTROL_PLANE);
      await eventually(async () => (await apiOK(B(), 'info', {})).nodes.length === 3, 'info listing three nodes');
    }),
  );

  it(
    'API disconnect sent to C drops a user connected to A',
    { timeout: 30_000 },
    traced(async (track, t) => {
      if ((await nodesInInfo()) <= 1) return t.skip(NO_CONTROL_PLANE);
      const eve = track(newClient('eve', A));
      eve.client.connect();
      await eve.rec.nth('connected');
      eve.gate.close();
      await apiOK(C(), 'disconnect', { user: 'eve', disconnect: { code: 3011, reason: 'force reconnect' } });
      const connecting = await eve.rec.until('connecting after 3011', (r) =>
        r.of('connecting').find((c) => c.code === 3011),
      );
      assert.equal(connecting.reason, 'force reconnect');
    }),
  );
});
