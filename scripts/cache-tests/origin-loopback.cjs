// Preloaded (node -r) into the suite's origin server, which calls server.listen(port) and so would
// listen on every interface: bind it to 127.0.0.1 instead. Port 0 picks a free port; the server's
// "Listening on http://127.0.0.1:PORT/" line says which.
'use strict'
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length === 1 && (typeof args[0] === 'number' || typeof args[0] === 'string')) {
    return listen.call(this, Number(args[0]), '127.0.0.1')
  }
  return listen.apply(this, args)
}
