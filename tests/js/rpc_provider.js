'use strict';
// A sofa-rpc-node provider (no registry) on 127.0.0.1: service com.nodejs.test.TestService:1.0
// with plus(a, b) and whoami(); prints "listening <port>" when ready.
//   node rpc_provider.js --port P --name NAME
const net = require('net');
const { RpcServer } = require('sofa-rpc-node').server;

const { opt } = require('./args');
const port = Number(opt('port'));
const name = opt('name', 'provider');

// RpcServer listens on every interface; the tests keep all traffic on loopback.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function(p, ...rest) {
  if (typeof p === 'number') return listen.call(this, p, '127.0.0.1', ...rest);
  return listen.call(this, p, ...rest);
};

const logger = { info() {}, warn() {}, debug() {}, error: console.error };
const server = new RpcServer({ logger, port });
server.addService({ interfaceName: 'com.nodejs.test.TestService' }, {
  async plus(a, b) { return a + b; },
  async whoami() { return name; },
});
server.start().then(() => console.log(`listening ${port}`));
process.on('SIGTERM', () => process.exit(0));
