// Harness code that readme_client_test.go runs after the README's
// JavaScript client: the end of stdin closes the README's socket, and
// Node exits once it is closed.
process.stdin.on("end", () => socket.close());
process.stdin.resume();
