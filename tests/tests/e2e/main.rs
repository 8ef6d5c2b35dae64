//! End-to-end tests: the four services started in-process on port 0 against the real
//! PostgreSQL, Redis and NATS, driven through the gateway's REST API as a client
//! would. Each test isolates itself with its own bus prefix and fresh tenants.

mod admin;
mod attachments;
mod big_rooms;
mod blocks;
mod browser;
mod bus;
mod contract;
mod conversations;
mod erasure;
mod errors;
mod guards;
mod health;
mod hostile;
mod jwt_issuers;
mod mentions;
mod messages;
mod moderation;
mod notifications;
mod numbers;
mod observability;
mod offline_notifications;
mod openapi;
mod pins;
mod presence;
mod publish;
mod ratelimit;
mod reactions;
mod receipts;
mod rest_chat;
mod rest_helpers;
mod rooms;
mod search;
mod security;
mod socket_security;
mod socketio;
mod storage;
mod sync;
mod threads;
mod webapp;
mod ws;
