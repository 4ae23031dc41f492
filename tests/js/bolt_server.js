'use strict';
// A Bolt server built on sofa-bolt-node: answers every request with "<name>:<method>:<arg0>",
// answers heartbeats, and prints "listening <port>" once it accepts connections.
//   node bolt_server.js --port 0 --name a [--slow-ms 500] [--no-heartbeat] [--count-file F]
// Methods starting with "slow" are answered after --slow-ms; those starting with "hang" never. Every request is appended
// (method and arg) to --count-file when given, so tests can count what reached this server.
const net = require('net');
const fs = require('fs');
const protocol = require('sofa-bolt-node');

const { opt, flag } = require('./args');
const name = opt('name', 'server');
const slowMs = Number(opt('slow-ms', '500'));
const countFile = opt('count-file', null);

const server = net.createServer(socket => {
  const options = { sentReqs: new Map() };
  const encoder = protocol.encoder(options);
  const decoder = protocol.decoder(options);
  encoder.pipe(socket).pipe(decoder);
  socket.on('error', () => {});
  encoder.on('error', () => {});
  decoder.on('error', err => { console.error(`[${name}] decode error: ${err.message}`); socket.destroy(); });
  decoder.on('request', req => {
    const method = req.data.methodName;
    const arg = req.data.args && req.data.args.length ? String(req.data.args[0]) : '';
    if (countFile) fs.appendFileSync(countFile, `${method} ${arg}\n`);
    const answer = () => encoder.writeResponse(req, {
      isError: false,
      appResponse: { $class: 'java.lang.String', $: `${name}:${method}:${arg}` },
    });
    if (method.startsWith('hang')) return;
    if (method.startsWith('slow')) {
      // sofa-bolt-node refuses to encode a response past the request's timeout; a real slow
      // server (Java SOFARPC) still sends it, and the proxy must cope with that late answer.
      req.options.timeout = 0;
      setTimeout(answer, slowMs);
    } else {
      answer();
    }
  });
  decoder.on('heartbeat', hb => {
    if (countFile) fs.appendFileSync(countFile, 'heartbeat -\n');
    if (!flag('no-heartbeat')) encoder.writeHeartbeatAck(hb);
  });
});
server.listen(Number(opt('port', '0')), opt('host', '127.0.0.1'), () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
