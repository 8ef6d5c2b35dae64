//! Attachments: files sent into a chat (`POST /api/chat/{id}/messages/file`) and read
//! back through signed, expiring links (`GET /api/chat/{id}/files/{token}`).

pub mod links;
pub mod sniff;
pub mod store;
