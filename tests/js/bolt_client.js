'use strict';
// A Bolt client built on sofa-bolt-node. Sends --count requests (at most --concurrency in
// flight per connection) over --connections connections and prints one JSON line:
//   {"ok":N,"errors":{"<message>":N},"answers":{"<answer>":N},"mismatched":N,"ms":T}
// "mismatched" counts answers that do not belong to the request they came back for (each
// request's arg is unique, and the server echoes it).
//   node bolt_client.js --port P --service S [--method sayHello] [--count 1] [--concurrency 1]
//       [--connections 1] [--v2] [--crc] [--timeout 3000] [--heartbeat]
const net = require('net');
const protocol = require('sofa-bolt-node');

const { opt, flag } = require('./args');
const port = Number(opt('port'));
const service = opt('service', 'com.alipay.sofa.rpc.quickstart.HelloService:1.0');
const method = opt('method', 'sayHello');
const count = Number(opt('count', '1'));
const concurrency = Number(opt('concurrency', '1'));
const connections = Number(opt('connections', '1'));
const timeout = Number(opt('timeout', '3000'));
const result = { ok: 0, errors: {}, answers: {}, mismatched: 0, heartbeats: 0 };
const start = Date.now();
let nextArg = 0;
let done = 0;

function finish() {
  result.ms = Date.now() - start;
  console.log(JSON.stringify(result));
  process.exit(0);
}

function connection(id) {
  return new Promise(resolve => {
    const sentReqs = new Map();
    const encoder = protocol.encoder({ sentReqs });
    const decoder = protocol.decoder({ sentReqs });
    if (flag('v2')) {
      encoder.protocolType = 'bolt2';
      encoder.boltVersion = 2;
      encoder.crcEnable = flag('crc');
    }
    const socket = net.connect(port, opt('host', '127.0.0.1'));
    encoder.pipe(socket).pipe(decoder);
    const waiting = new Map(); // packet id -> { arg, timer }
    let packetId = id * 1000000;
    let closed = false;
    const fail = (arg, msg) => { result.errors[msg] = (result.errors[msg] || 0) + 1; };
    const settle = () => { done++; if (done === count) finish(); };
    const sendNext = () => {
      if (closed || nextArg >= count) return;
      const arg = `req-${nextArg++}`;
      const pid = ++packetId;
      const req = { args: [{ $class: 'java.lang.String', $: arg }], serverSignature: service, methodName: method, timeout };
      sentReqs.set(pid, { req });
      const timer = setTimeout(() => { waiting.delete(pid); fail(arg, 'client timeout'); settle(); sendNext(); }, timeout + 2000);
      waiting.set(pid, { arg, timer });
      encoder.writeRequest(pid, req);
    };
    decoder.on('response', res => {
      const w = waiting.get(res.packetId);
      if (!w) { result.mismatched++; return; }
      waiting.delete(res.packetId);
      clearTimeout(w.timer);
      const d = res.data || {};
      if (d.error || d.isError) {
        fail(w.arg, (d.error && d.error.message) || d.errorMsg || 'error');
      } else {
        const answer = String(d.appResponse);
        if (!answer.endsWith(':' + w.arg)) result.mismatched++;
        const key = answer.slice(0, answer.length - w.arg.length - 1);
        result.answers[key] = (result.answers[key] || 0) + 1;
        result.ok++;
      }
      settle();
      sendNext();
    });
    decoder.on('heartbeat_ack', () => { result.heartbeats++; });
    decoder.on('error', err => fail('', 'decode: ' + err.message));
    socket.on('error', err => { result.errors['socket: ' + err.code] = (result.errors['socket: ' + err.code] || 0) + 1; });
    socket.on('close', () => {
      closed = true;
      for (const [pid, w] of waiting) { clearTimeout(w.timer); fail(w.arg, 'connection closed'); settle(); }
      waiting.clear();
    });
    socket.once('connect', () => {
      if (flag('heartbeat')) encoder.writeHeartbeat(++packetId, { clientUrl: 'test' });
      for (let i = 0; i < concurrency; i++) sendNext();
      resolve();
    });
  });
}

(async () => {
  if (count === 0) { // heartbeat only
    await connection(0);
    setTimeout(finish, 500);
    return;
  }
  for (let c = 0; c < connections; c++) await connection(c);
})();
