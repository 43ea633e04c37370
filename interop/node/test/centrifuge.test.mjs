// Interop: the official npm `centrifuge` client (v5), JSON and Protobuf
// builds, against the real switchboard binary.
//
// SWITCHBOARD_BIN=/path/to/switchboard skips the `go build`;
// INTEROP_TRACE=1 prints every WebSocket frame of every test.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Centrifuge as CentrifugeJSON } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';

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

let server;
const liveClients = new Set();

before(async () => {
  const config = serverConfig();
  if (REDIS_MODE) {
    // INTEROP_ENGINE=redis: the same scenarios through the Redis engine.
    const why = await redisUnreachable();
    if (why) throw new Error(`INTEROP_ENGINE=redis but the test Redis is unreachable: ${why}`);
    config.engine = redisEngine();
  }
  server = await startServer(config);
});

after(async () => {
  for (const c of liveClients) c.disconnect();
  liveClients.clear();
  if (!server) return;
  const exit = await server.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `server exit after SIGTERM; stderr:\n${server.stderr()}`);
});

/**
 * A Centrifuge client over a tracing WebSocket with its events recorded.
 * Frames are kept in client.trace and appended to a failing test's error.
 */
function newClient(proto, opts = {}) {
  const trace = [];
  const gate = new Gate();
  const Centrifuge = proto === 'protobuf' ? CentrifugeProtobuf : CentrifugeJSON;
  const client = new Centrifuge(server.wsURL, {
    websocket: tracingWebSocket(trace, gate),
    name: `node-interop-${proto}`,
    timeout: 5000,
    ...opts,
  });
  const rec = new Recorder().attach(client, CLIENT_EVENTS);
  liveClients.add(client);
  return { client, rec, trace, gate };
}

function subscribe(c, channel, opts) {
  const sub = c.client.newSubscription(channel, opts);
  const rec = new Recorder().attach(sub, SUB_EVENTS);
  sub.subscribe();
  return { sub, rec };
}

function close(...cs) {
  for (const c of cs) {
    c.client.disconnect();
    liveClients.delete(c.client);
  }
}

/** Data in the client's format: JSON object, or bytes holding JSON for protobuf. */
function payload(proto, obj) {
  return proto === 'protobuf' ? new TextEncoder().encode(JSON.stringify(obj)) : obj;
}

/** Runs body; on failure appends the frames of the clients it created. */
function traced(body) {
  return async () => {
    const clients = [];
    const track = (c) => {
      clients.push(c);
      return c;
    };
    try {
      await body(track);
    } catch (e) {
      const frames = clients.map((c, i) => `client #${i + 1} frames:\n  ${c.trace.join('\n  ')}`).join('\n');
      e.message += `\n${frames}`;
      throw e;
    } finally {
      if (process.env.INTEROP_TRACE) {
        clients.forEach((c, i) => console.log(`client #${i + 1} frames:\n  ${c.trace.join('\n  ')}`));
      }
      close(...clients);
    }
  };
}

async function expectRejects(promise, code, what) {
  const err = await promise.then(
    (v) => assert.fail(`${what}: expected error ${code}, got success ${JSON.stringify(v)}`),
    (e) => e,
  );
  assert.equal(err.code, code, `${what}: ${JSON.stringify(err)}`);
  return err;
}

// Set to a reason string to mark the Protobuf scenarios as todo.
const PROTOBUF_TODO = null;
const todoFor = (proto) => (proto === 'protobuf' && PROTOBUF_TODO ? PROTOBUF_TODO : undefined);

/** Encodes n as a protobuf uvarint. */
function uvarint(n) {
  const out = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited Protobuf Command{id, connect: ConnectRequest{token}}. */
function protobufConnectCommand(id, token) {
  const tok = Buffer.from(token);
  const connect = Buffer.concat([Buffer.from([0x0a]), uvarint(tok.length), tok]); // ConnectRequest.token = 1
  const cmd = Buffer.concat([Buffer.from([0x08]), uvarint(id), Buffer.from([0x22]), uvarint(connect.length), connect]); // Command.id = 1, Command.connect = 4
  return Buffer.concat([uvarint(cmd.length), cmd]);
}

/** Opens a raw ws connection, sends one frame and resolves with the first reply frame. */
function firstReply(url, protocols, frame) {
  return new Promise((resolve, reject) => {
    // skipUTF8Validation: see the frame type even when the server gets it wrong.
    const ws = new WebSocket(url, protocols, { skipUTF8Validation: true });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('timeout waiting for the connect reply'));
    }, 10_000);
    ws.on('open', () => ws.send(frame));
    ws.on('message', (data, isBinary) => {
      clearTimeout(timer);
      resolve({ data: Buffer.from(data), isBinary, protocol: ws.protocol });
      ws.close();
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

describe('WebSocket frame types', () => {
  it('JSON replies are text frames', async () => {
    const reply = await firstReply(server.wsURL, [], JSON.stringify({ id: 1, connect: { token: connectToken('frames') } }));
    assert.equal(reply.isBinary, false);
    assert.equal(JSON.parse(reply.data.toString()).id, 1);
  });
  for (const [how, url, protocols] of [
    ['subprotocol centrifuge-protobuf', () => server.wsURL, ['centrifuge-protobuf']],
    ['?cf_protocol=protobuf', () => `${server.wsURL}?cf_protocol=protobuf`, []],
  ]) {
    it(`Protobuf replies are binary frames (${how})`, { todo: todoFor('protobuf') }, async () => {
      const reply = await firstReply(url(), protocols, protobufConnectCommand(1, connectToken('frames')));
      assert.equal(reply.isBinary, true, `reply frame opcode must be binary; got text with bytes ${reply.data.toString('hex')}`);
      // Reply{id = 1 (field 1), connect (field 5)}, uvarint-length-prefixed.
      assert.deepEqual([...reply.data.subarray(1, 4)], [0x08, 0x01, 0x2a]);
    });
  }
});

for (const proto of ['json', 'protobuf']) {
  describe(`centrifuge-js ${proto}`, () => {
    it(
      'connects with a token, subscribes, receives API and client publications, join/leave, presence, history',
      { timeout: 30_000, todo: todoFor(proto) },
      traced(async (track) => {
        const room = `chat:room-${proto}`;
        const alice = track(newClient(proto, { token: connectToken(`alice-${proto}`) }));
        const aSub = subscribe(alice, room);
        alice.client.connect();
        const connected = await alice.rec.nth('connected');
        assert.ok(connected.client, 'connected event carries a client id');
        assert.equal(connected.transport, 'websocket');
        const subscribed = await aSub.rec.nth('subscribed');
        assert.equal(subscribed.channel, room);
        assert.equal(subscribed.recoverable, true, 'force_recovery namespace is recoverable');
        assert.equal(subscribed.wasRecovering, false);
        assert.ok(subscribed.streamPosition?.epoch, 'stream position has an epoch');
        assert.equal(subscribed.streamPosition.offset, 0);

        // Publication from the server API.
        const res = await server.api('publish', { channel: room, data: { text: 'from api' } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.ok(res.body.result, JSON.stringify(res.body));
        const p1 = await aSub.rec.nth('publication', 1);
        assert.equal(p1.channel, room);
        assert.deepEqual(decodeData(p1.data), { text: 'from api' });
        assert.equal(p1.offset, 1);
        assert.equal(p1.info, undefined, 'API publication has no publisher info');

        // Client publish (through the subscription) reaches the subscriber with publisher info.
        await aSub.sub.publish(payload(proto, { text: 'from alice' }));
        const p2 = await aSub.rec.nth('publication', 2);
        assert.deepEqual(decodeData(p2.data), { text: 'from alice' });
        assert.equal(p2.offset, 2);
        assert.equal(p2.info?.user, `alice-${proto}`);
        assert.equal(p2.info?.client, connected.client);

        // Client publish through Centrifuge.publish as well.
        await alice.client.publish(room, payload(proto, { text: 'again' }));
        const p3 = await aSub.rec.nth('publication', 3);
        assert.deepEqual(decodeData(p3.data), { text: 'again' });
        assert.equal(p3.offset, 3);

        // Join of a second user, with conn info from the token's `info` claim.
        const bob = track(newClient(proto, { token: connectToken(`bob-${proto}`, { info: { name: 'Bob' } }) }));
        const bSub = subscribe(bob, room);
        bob.client.connect();
        const bobConnected = await bob.rec.nth('connected');
        await bSub.rec.nth('subscribed');
        const join = await aSub.rec.until('join of bob', (r) =>
          r.of('join').find((j) => j.info.user === `bob-${proto}`),
        );
        assert.equal(join.channel, room);
        assert.equal(join.info.client, bobConnected.client);
        assert.deepEqual(decodeData(join.info.connInfo), { name: 'Bob' });

        // Presence and presence stats, from the subscription and the client.
        const pres = await aSub.sub.presence();
        assert.deepEqual(Object.keys(pres.clients).sort(), [connected.client, bobConnected.client].sort());
        assert.equal(pres.clients[connected.client].user, `alice-${proto}`);
        assert.equal(pres.clients[bobConnected.client].user, `bob-${proto}`);
        assert.deepEqual(decodeData(pres.clients[bobConnected.client].connInfo), { name: 'Bob' });
        const pres2 = await bob.client.presence(room);
        assert.equal(Object.keys(pres2.clients).length, 2);
        const stats = await aSub.sub.presenceStats();
        assert.deepEqual({ ...stats }, { numClients: 2, numUsers: 2 });
        const stats2 = await alice.client.presenceStats(room);
        assert.deepEqual({ ...stats2 }, { numClients: 2, numUsers: 2 });

        // Leave when bob unsubscribes.
        bSub.sub.unsubscribe();
        const leave = await aSub.rec.until('leave of bob', (r) =>
          r.of('leave').find((l) => l.info.user === `bob-${proto}`),
        );
        assert.equal(leave.info.client, bobConnected.client);
        assert.equal(leave.channel, room);
        const stats3 = await aSub.sub.presenceStats();
        assert.deepEqual({ ...stats3 }, { numClients: 1, numUsers: 1 });

        // History: all, limited, reverse, since.
        const hist = await aSub.sub.history({ limit: 10 });
        assert.equal(hist.offset, 3);
        assert.equal(hist.epoch, subscribed.streamPosition.epoch);
        assert.deepEqual(
          hist.publications.map((p) => [p.offset, decodeData(p.data).text]),
          [
            [1, 'from api'],
            [2, 'from alice'],
            [3, 'again'],
          ],
        );
        assert.equal(hist.publications[1].info?.user, `alice-${proto}`);
        const histRev = await alice.client.history(room, { limit: 2, reverse: true });
        assert.deepEqual(
          histRev.publications.map((p) => p.offset),
          [3, 2],
        );
        const histSince = await aSub.sub.history({ limit: 10, since: { offset: 1, epoch: hist.epoch } });
        assert.deepEqual(
          histSince.publications.map((p) => p.offset),
          [2, 3],
        );
        const histTop = await aSub.sub.history({ limit: 0 });
        assert.equal(histTop.publications.length, 0, 'limit 0 returns only the stream top');
        assert.equal(histTop.offset, 3);

        // Nothing else arrived on the subscription.
        assert.equal(aSub.rec.of('publication').length, 3);
        assert.deepEqual(aSub.rec.of('error'), []);
      }),
    );

    it(
      'recovers missed publications after a forced reconnect (3011)',
      { timeout: 30_000, todo: todoFor(proto) },
      traced(async (track) => {
        const user = `carol-${proto}`;
        const channel = `chat:recover-${proto}`;
        const carol = track(newClient(proto, { token: connectToken(user), minReconnectDelay: 50 }));
        const sub = subscribe(carol, channel);
        carol.client.connect();
        const first = await sub.rec.nth('subscribed', 1);
        assert.equal(first.recoverable, true);
        await server.api('publish', { channel, data: { n: 1 } });
        await sub.rec.nth('publication', 1);

        // Hold reconnection, force the disconnect, publish while carol is away.
        carol.gate.close();
        const dis = await server.api('disconnect', {
          user,
          disconnect: { code: 3011, reason: 'force reconnect' },
        });
        assert.equal(dis.status, 200, JSON.stringify(dis.body));
        const connecting = await carol.rec.until('connecting after 3011', (r) =>
          r.of('connecting').find((c) => c.code === 3011),
        );
        assert.equal(connecting.reason, 'force reconnect');
        await sub.rec.until('subscribing after disconnect', (r) => r.of('subscribing').length >= 2);
        await eventually(async () => {
          const s = await server.api('presence_stats', { channel });
          return s.body.result?.num_clients === 0 || (s.body.result && !s.body.result.num_clients);
        }, 'carol gone from presence');
        for (const n of [2, 3, 4]) {
          const r = await server.api('publish', { channel, data: { n } });
          assert.equal(r.status, 200, JSON.stringify(r.body));
        }
        carol.gate.open();

        const again = await sub.rec.nth('subscribed', 2);
        assert.equal(again.wasRecovering, true, 'subscribed.wasRecovering');
        assert.equal(again.recovered, true, 'subscribed.recovered');
        assert.equal(again.hasRecoveredPublications, true, 'missed publications came in the subscribe reply');
        assert.equal(again.streamPosition.epoch, first.streamPosition.epoch);
        await sub.rec.until('4 publications', (r) => r.of('publication').length >= 4);
        assert.deepEqual(
          sub.rec.of('publication').map((p) => [p.offset, decodeData(p.data).n]),
          [
            [1, 1],
            [2, 2],
            [3, 3],
            [4, 4],
          ],
        );
        // Live publications still flow after recovery.
        await server.api('publish', { channel, data: { n: 5 } });
        const p5 = await sub.rec.nth('publication', 5);
        assert.equal(decodeData(p5.data).n, 5);
        assert.equal(p5.offset, 5);
      }),
    );

    it(
      'asks getToken for a new token when the token has expired, then connects',
      { timeout: 30_000, todo: todoFor(proto) },
      traced(async (track) => {
        const user = `dave-${proto}`;
        let calls = 0;
        const dave = track(
          newClient(proto, {
            token: connectToken(user, { ttlSec: -3600 }),
            minReconnectDelay: 50,
            getToken: async () => {
              calls++;
              return connectToken(user);
            },
          }),
        );
        dave.client.connect();
        const err = await dave.rec.until('connect error 109', (r) =>
          r.of('error').find((e) => e.type === 'connect'),
        );
        assert.equal(err.error.code, 109, JSON.stringify(err));
        await dave.rec.nth('connected');
        assert.equal(calls, 1, 'getToken called exactly once');
        assert.equal(dave.client.state, 'connected');
      }),
    );

    it(
      'rejects a forbidden channel (103), an unknown namespace (102) and an RPC without handler (104)',
      { timeout: 30_000, todo: todoFor(proto) },
      traced(async (track) => {
        const erin = track(newClient(proto, { token: connectToken(`erin-${proto}`) }));
        erin.client.connect();
        await erin.rec.nth('connected');

        const locked = subscribe(erin, 'locked:x');
        const unsub = await locked.rec.nth('unsubscribed');
        assert.equal(unsub.code, 103, JSON.stringify(unsub));
        assert.equal(unsub.reason, 'permission denied');
        assert.equal(locked.rec.of('subscribed').length, 0);
        await expectRejects(erin.client.publish('locked:x', payload(proto, {})), 103, 'publish to locked:x');

        const unknown = subscribe(erin, 'nope:x');
        const unsub2 = await unknown.rec.nth('unsubscribed');
        assert.equal(unsub2.code, 102, JSON.stringify(unsub2));
        assert.equal(unsub2.reason, 'unknown channel');
        await expectRejects(erin.client.publish('nope:x', payload(proto, {})), 102, 'publish to nope:x');

        const rpcErr = await expectRejects(erin.client.rpc('anything', payload(proto, {})), 104, 'rpc');
        assert.equal(rpcErr.message, 'method not found');

        // The connection survives all of that.
        assert.equal(erin.client.state, 'connected');
        assert.equal(erin.rec.of('disconnected').length, 0);
        assert.equal(erin.rec.of('connected').length, 1);
      }),
    );
  });
}

/** Bytes of a JSON text with raw invalid UTF-8 where POISON appears. */
function poisoned(text) {
  const bad = Buffer.from([0xff, 0xfe]);
  const parts = text.split('POISON').map((p) => Buffer.from(p));
  return Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [bad, p])));
}

/**
 * Sends one text frame (raw bytes, possibly not UTF-8) on a raw JSON
 * WebSocket and resolves with the replies, by id, once one with lastID
 * arrived; rejects if any frame from the server is not UTF-8.
 */
function rawJSONSession(url, frame, lastID) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [], { skipUTF8Validation: true });
    const replies = new Map();
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`timeout waiting for reply ${lastID}; got ${JSON.stringify([...replies])}`));
    }, 10_000);
    ws.on('open', () => ws.send(frame, { binary: false }));
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.from(data);
      if (isBinary || !isUTF8(buf)) {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(`server sent a frame that is not UTF-8 text: ${buf.toString('hex')}`));
        return;
      }
      for (const line of buf.toString('utf8').split('\n')) {
        const msg = JSON.parse(line);
        if (msg.id) replies.set(msg.id, msg);
      }
      if (replies.has(lastID)) {
        clearTimeout(timer);
        ws.close();
        resolve(replies);
      }
    });
    ws.on('close', (code) => {
      clearTimeout(timer);
      if (!replies.has(lastID)) reject(new Error(`closed with ${code} before reply ${lastID}`));
    });
    ws.on('error', reject);
  });
}

function isUTF8(buf) {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(buf);
    return true;
  } catch {
    return false;
  }
}

for (const proto of ['json', 'protobuf']) {
  describe(`publications cannot poison a channel (${proto} subscriber)`, () => {
    it(
      'refuses data that is not UTF-8 with 107 (API publish, broadcast, batch; client publish), and the subscriber keeps working and recovers',
      { timeout: 30_000 },
      traced(async (track) => {
        const user = `pat-${proto}`;
        const channel = `chat:poison-${proto}`;
        const pat = track(newClient(proto, { token: connectToken(user), minReconnectDelay: 50 }));
        const sub = subscribe(pat, channel);
        pat.client.connect();
        const first = await sub.rec.nth('subscribed', 1);
        const ok = await server.api('publish', { channel, data: { n: 1 } });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        await sub.rec.nth('publication', 1);

        // Server API: every path is refused with 107 and stores nothing.
        const pub = await server.apiRaw('publish', poisoned(`{"channel":"${channel}","data":"POISON"}`));
        assert.equal(pub.status, 200);
        assert.equal(pub.body.error?.code, 107, JSON.stringify(pub.body));
        const bc = await server.apiRaw('broadcast', poisoned(`{"channels":["${channel}"],"data":{"k":"POISON"}}`));
        assert.equal(bc.body.result?.responses?.[0]?.error?.code, 107, JSON.stringify(bc.body));
        const batch = await server.apiRaw('batch', poisoned(`{"commands":[{"publish":{"channel":"${channel}","data":"POISON"}}]}`));
        assert.equal(batch.body.replies?.[0]?.error?.code, 107, JSON.stringify(batch.body));

        // A JSON client sending such data (raw frame: the npm client cannot) gets 107 too.
        const raw = poisoned(
          `{"id":1,"connect":{"token":"${connectToken(`raw-${proto}`)}"}}\n` +
            `{"id":2,"subscribe":{"channel":"${channel}"}}\n` +
            `{"id":3,"publish":{"channel":"${channel}","data":"POISON"}}\n` +
            `{"id":4,"rpc":{"method":"m","data":"POISON"}}`,
        );
        const replies = await rawJSONSession(server.wsURL, raw, 4);
        assert.ok(replies.get(2).subscribe, JSON.stringify(replies.get(2)));
        assert.deepEqual(replies.get(3).error, { code: 107, message: 'bad request' });
        assert.deepEqual(replies.get(4).error, { code: 107, message: 'bad request' });

        // The subscriber is untouched and the channel still works.
        await server.api('publish', { channel, data: { n: 2 } });
        const p2 = await sub.rec.nth('publication', 2);
        assert.equal(p2.offset, 2, 'nothing poisoned was stored');
        assert.equal(pat.rec.of('disconnected').length, 0);

        // Reconnect with recovery: only the good publications, recovered.
        pat.gate.close();
        await server.api('disconnect', { user, disconnect: { code: 3011, reason: 'force reconnect' } });
        await sub.rec.until('subscribing after disconnect', (r) => r.of('subscribing').length >= 2);
        await server.api('publish', { channel, data: { n: 3 } });
        pat.gate.open();
        const again = await sub.rec.nth('subscribed', 2);
        assert.equal(again.recovered, true);
        assert.equal(again.streamPosition.epoch, first.streamPosition.epoch);
        await sub.rec.until('3 publications', (r) => r.of('publication').length >= 3);
        assert.deepEqual(
          sub.rec.of('publication').map((p) => [p.offset, decodeData(p.data).n]),
          [
            [1, 1],
            [2, 2],
            [3, 3],
          ],
        );
        const hist = await sub.sub.history({ limit: 10 });
        assert.deepEqual(
          hist.publications.map((p) => decodeData(p.data).n),
          [1, 2, 3],
        );
        assert.equal(pat.client.state, 'connected');
      }),
    );
  });
}

describe('binary publications (Protobuf publisher, as in Centrifugo)', () => {
  it(
    'reach Protobuf subscribers; a JSON subscriber is disconnected with 3506 and, reconnecting, recovers the rest',
    { timeout: 30_000 },
    traced(async (track) => {
      const channel = 'chat:binary';
      const pb = track(newClient('protobuf', { token: connectToken('bin-pb') }));
      const pbSub = subscribe(pb, channel);
      const js = track(newClient('json', { token: connectToken('bin-js'), minReconnectDelay: 50 }));
      const jsSub = subscribe(js, channel);
      pb.client.connect();
      js.client.connect();
      await pbSub.rec.nth('subscribed');
      await jsSub.rec.nth('subscribed');

      const binary = new Uint8Array([0xff, 0x00, 0xfe]);
      await pbSub.sub.publish(binary);
      const got = await pbSub.rec.nth('publication', 1);
      assert.deepEqual([...got.data], [...binary]);

      const dis = await js.rec.nth('disconnected');
      assert.equal(dis.code, 3506, JSON.stringify(dis));
      assert.equal(dis.reason, 'inappropriate protocol');

      // JSON publications continue; the JSON client reconnects and recovers
      // them, without the binary one it cannot carry.
      await server.api('publish', { channel, data: { n: 2 } });
      await pbSub.rec.nth('publication', 2);
      js.client.connect();
      const again = await jsSub.rec.nth('subscribed', 2);
      assert.equal(again.wasRecovering, true);
      const p = await jsSub.rec.nth('publication', 1);
      assert.equal(p.offset, 2);
      assert.deepEqual(p.data, { n: 2 });
      const hist = await js.client.history(channel, { limit: 10 });
      assert.deepEqual(
        hist.publications.map((x) => x.offset),
        [2],
      );
    }),
  );
});
