// Preloaded with `node --require` in front of Portkey's gateway, which has no listen-address
// option and would otherwise listen on every interface: every server binds to loopback only.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    // listen(port[, host][, backlog][, callback]): put the host in second place.
    const port = args[0];
    const rest = args.slice(1).filter((arg) => typeof arg !== 'string');
    args = [port, '127.0.0.1', ...rest];
  }
  return listen.apply(this, args);
};
