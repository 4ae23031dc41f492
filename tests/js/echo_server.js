'use strict';
// A TCP echo server on Node's event loop (one process for any number of connections, unlike a
// forking socat): prints "listening <port>" once it accepts connections.
//   node echo_server.js --port 0 [--no-read]
// With --no-read it accepts connections and never reads them (an upstream that stopped
// reading: its socket buffers fill and the sender must feel it).
const net = require('net');
const { opt, flag } = require('./args');

const server = net.createServer(socket => {
  socket.on('error', () => {});
  if (flag('no-read')) {
    socket.pause();
    return;
  }
  socket.pipe(socket);
});
server.maxConnections = 100000;
server.listen(Number(opt('port', '0')), '127.0.0.1', 4096, () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
