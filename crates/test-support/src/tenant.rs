//! [`TestTenant`]: a tenant made through the admin API for one test.

use crate::http::Client;

/// A tenant made for one test.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: String,
    pub api_key: String,
    pub(crate) http: reqwest::Client,
    /// Each gateway of the stack.
    pub(crate) base_urls: Vec<String>,
}

impl TestTenant {
    /// A client acting as `user` through gateway 0.
    pub fn user(&self, user: &str) -> Client {
        self.user_on(0, user)
    }

    /// A client acting as `user` through gateway `i`.
    pub fn user_on(&self, i: usize, user: &str) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base_urls[i].clone(),
            headers: vec![("X-API-Key".to_owned(), self.api_key.clone()), ("X-User-Id".to_owned(), user.to_owned())],
        }
    }
}
