//! File messages, `rest-chat.md`'s attachments (the store and the signed links are the
//! core's, `gateway_core::attachments`):
//!
//! - `upload`: `POST /api/chat/{id}/messages/file` (multipart), streamed into the store
//!   under the tenant's size limit and allowed types, then sent as a message.
//! - `download`: `GET /api/chat/{id}/files/{token}`, for participants only.

pub(crate) mod download;
pub(crate) mod upload;
