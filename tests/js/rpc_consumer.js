'use strict';
// A sofa-rpc-node consumer in direct mode (serverHost = sluice): calls plus(i, i) --count
// times and whoami() --count times, and prints {"sums_ok":N,"who":{"name":N},"errors":[...]}.
//   node rpc_consumer.js --host 127.0.0.1:P [--count 20]
const { RpcClient } = require('sofa-rpc-node').client;

const { opt } = require('./args');
const logger = { info() {}, warn() {}, debug() {}, error() {} };

(async () => {
  const client = new RpcClient({ logger });
  const consumer = client.createConsumer({
    interfaceName: 'com.nodejs.test.TestService',
    serverHost: opt('host'),
  });
  await consumer.ready();
  const out = { sums_ok: 0, who: {}, errors: [] };
  const count = Number(opt('count', '20'));
  for (let i = 0; i < count; i++) {
    try {
      const r = await consumer.invoke('plus', [ i, i ], { responseTimeout: 3000 });
      if (r === 2 * i) out.sums_ok++; else out.errors.push(`plus(${i},${i}) = ${r}`);
    } catch (e) {
      out.errors.push(e.message);
    }
  }
  for (let i = 0; i < count; i++) {
    try {
      const who = await consumer.invoke('whoami', [], { responseTimeout: 3000 });
      out.who[who] = (out.who[who] || 0) + 1;
    } catch (e) {
      out.errors.push(e.message);
    }
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch(e => { console.log(JSON.stringify({ fatal: e.message })); process.exit(1); });
