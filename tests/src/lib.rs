//! End-to-end tests across the services. They live in `tests/e2e/` (one binary, a
//! module per area) and use `chat-test-support` to start the stack in-process.
