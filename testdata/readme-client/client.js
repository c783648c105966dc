// The JavaScript client of the seed README ("5. Connect and use from
// client side" and the send of "Using Whisper Events"), run in Node by
// readme_client_test.go:
//
//   node client.js ws://127.0.0.1:8080/ws alice
//
// The README's code is kept as written. What Node needs is added around
// it and marked "harness": the WebSocket class from the npm "ws" package,
// the server URL and user from the command line (?user= is how
// examples/basic identifies users), and a way for the test to trigger the
// whisper and to know when the subscriptions are live. Each line of stdin
// saying "whisper" sends the README's whisper; the end of stdin closes the
// socket.

// harness: Node 20 has no global WebSocket.
const WebSocket = require("ws");
// harness: the URL and user from the command line.
const [url, user] = process.argv.slice(2);

// README, with the URL from the command line:
const socket = new WebSocket(`${url}?user=${encodeURIComponent(user)}`);

// Handle connection
socket.onopen = function() {
    // Subscribe to channels
    socket.send(JSON.stringify({
        action: "subscribe",
        channel: "my-channel"
    }));

    // Subscribe to presence channel
    socket.send(JSON.stringify({
        action: "subscribe",
        channel: "presence-room-1"
    }));
};

// Handle incoming messages
socket.onmessage = function(event) {
    const data = JSON.parse(event.data);
    
    // Handle different message types
    switch(data.type) {
        case "message":
            console.log("New message:", data.message);
            break;
        case "presence":
            console.log("Presence update:", data.users);
            break;
        case "whisper":
            console.log(`Whisper from ${data.from}, event: ${data.event}, channel: ${data.channel}`);
            console.log("Whisper data:", data.data);
            break;
        case "error":
            console.error("Error:", data.error);
            break;
    }
};

// Handle errors
socket.onerror = function(error) {
    console.error("WebSocket error:", error);
};

// Handle disconnection
socket.onclose = function() {
    console.log("Connection closed");
    // Implement reconnection logic here
};

// README "Using Whisper Events", step 1, wrapped in a function so the
// test decides when it runs.
function whisper() {
   // Send a whisper to a channel
   socket.send(JSON.stringify({
       action: "whisper",
       channel: "chat-room-1",  // Channel to whisper on
       event: "typing",         // Custom event name
       data: {                  // Custom data payload
           isTyping: true
       }
   }));
}

// harness: whispers reach the other subscribers of the channel, so the
// README's whisper channel is joined too, after the README's two.
socket.addEventListener("open", () => {
    socket.send(JSON.stringify({action: "subscribe", channel: "chat-room-1"}));
});

// harness: say when each subscription is live; the README's switch has
// no case for these acknowledgements.
socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "subscribed") {
        console.log(`harness: subscribed ${data.channel}`);
    }
});

// harness: "whisper" on stdin sends the README's whisper; the end of
// stdin closes the socket, and Node exits once it is closed.
let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
    pending += chunk;
    let i;
    while ((i = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, i).trim();
        pending = pending.slice(i + 1);
        if (line === "whisper") {
            whisper();
        }
    }
});
process.stdin.on("end", () => socket.close());
