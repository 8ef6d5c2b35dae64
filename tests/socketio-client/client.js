// Drives the stock socket.io-client v4 for the gateway's e2e tests.
//
// usage: node client.js '<options JSON>'
//   options: {url, auth?, query?, transports?, rejoin?: [chatId...], reconnectionDelayMax?}
//   `rejoin` chats are joined (join-chat-room, with an ack) on every connect, as an
//   application does after a reconnect.
// stdin: one command per line: {"op":"emit","id":n,"event":"...","args":[...],"ack":bool}
//        or {"op":"close"}.
// stdout: one JSON object per line: open (the Engine.IO session, with its first
//         transport), ping, connect, upgrade, connect_error, disconnect,
//         event (every server event), ack (the answer to an emit), joined (a rejoin's ack).
"use strict";

const { io } = require("socket.io-client");
const readline = require("readline");

const opts = JSON.parse(process.argv[2] || "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const socket = io(opts.url, {
  auth: opts.auth,
  query: opts.query,
  transports: opts.transports,
  reconnectionDelay: 200,
  reconnectionDelayMax: opts.reconnectionDelayMax || 1000,
});

// The Engine.IO session opened (on its first transport), before the namespace connects.
socket.io.on("open", () => {
  const engine = socket.io.engine;
  out({ type: "open", transport: engine.transport.name });
  engine.once("upgrade", (t) => out({ type: "upgrade", transport: t.name }));
});
// A ping from the server, answered by the client.
socket.io.on("ping", () => out({ type: "ping", transport: socket.io.engine.transport.name }));
socket.on("connect", () => {
  out({ type: "connect", id: socket.id, transport: socket.io.engine.transport.name });
  for (const chatId of opts.rejoin || []) {
    socket.emitWithAck("join-chat-room", chatId).then((response) => out({ type: "joined", chatId, response }));
  }
});
socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.onAny((event, ...args) => out({ type: "event", event, data: args[0] }));

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ type: "error", message: `bad command: ${e.message}` });
    return;
  }
  if (cmd.op === "close") {
    socket.close();
    out({ type: "closed" });
    process.exit(0);
  }
  if (cmd.op === "emit") {
    const args = cmd.args || [];
    if (cmd.ack) {
      const response = await socket.timeout(30000).emitWithAck(cmd.event, ...args).catch((e) => ({ timeout: e.message }));
      out({ type: "ack", id: cmd.id, response });
    } else {
      socket.emit(cmd.event, ...args);
      out({ type: "sent", id: cmd.id });
    }
  }
});
rl.on("close", () => process.exit(0));
