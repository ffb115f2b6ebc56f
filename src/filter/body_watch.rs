//! Guards against a host that never hands the request body to the filter: with Envoy's
//! `allow_on_headers_stop_iteration` off, proxy-wasm holds headers *and* body, and a request that
//! needs its body checked would wait until Envoy's stream timeout. Requests waiting for a body are
//! registered here; the root context's tick fails those still waiting after `LIMIT` with a 500, and
//! once that happened, later ones fail at once (the host will not change while the VM lives).

use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime};

/// How long a request may wait for the first body callback before the host is judged unable.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Whether the host delivers request bodies while headers are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyDelivery {
    Unknown,
    Works,
    Never,
}

#[derive(Debug)]
pub(crate) struct BodyWatch {
    waiting: RefCell<Vec<(u32, SystemTime)>>,
    delivery: Cell<BodyDelivery>,
}

impl Default for BodyWatch {
    fn default() -> Self {
        BodyWatch {
            waiting: RefCell::new(Vec::new()),
            delivery: Cell::new(BodyDelivery::Unknown),
        }
    }
}

impl BodyWatch {
    pub fn delivery(&self) -> BodyDelivery {
        self.delivery.get()
    }

    pub fn waiting(&self, context_id: u32, since: SystemTime) {
        self.waiting.borrow_mut().push((context_id, since));
    }

    /// The first body callback of a request: the host does deliver bodies.
    pub fn arrived(&self, context_id: u32) {
        self.forget(context_id);
        self.delivery.set(BodyDelivery::Works);
    }

    pub fn forget(&self, context_id: u32) {
        self.waiting
            .borrow_mut()
            .retain(|(id, _)| *id != context_id);
    }

    /// Requests waiting longer than `LIMIT`, removed from the watch. Only judged while no body was
    /// ever delivered: once bodies arrive, a slow client is Envoy's timeouts' business.
    pub fn expired(&self, now: SystemTime) -> Vec<u32> {
        if self.delivery.get() == BodyDelivery::Works {
            return Vec::new();
        }
        let mut waiting = self.waiting.borrow_mut();
        let (late, fresh): (Vec<_>, Vec<_>) = waiting
            .iter()
            .partition(|(_, since)| now.duration_since(*since).unwrap_or_default() >= LIMIT);
        *waiting = fresh;
        if !late.is_empty() {
            self.delivery.set(BodyDelivery::Never);
        }
        late.into_iter().map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_request_without_a_body_callback_expires_and_marks_the_host() {
        let watch = BodyWatch::default();
        watch.waiting(3, at(100));
        watch.waiting(4, at(103));
        assert!(watch.expired(at(104)).is_empty());
        assert_eq!(watch.expired(at(105)), vec![3]);
        assert_eq!(watch.delivery(), BodyDelivery::Never);
        assert_eq!(watch.expired(at(108)), vec![4]);
    }

    #[test]
    fn once_a_body_arrived_nothing_expires() {
        let watch = BodyWatch::default();
        watch.waiting(3, at(100));
        watch.waiting(4, at(100));
        watch.arrived(3);
        assert_eq!(watch.delivery(), BodyDelivery::Works);
        assert!(watch.expired(at(200)).is_empty());
        watch.forget(4);
        assert!(watch.waiting.borrow().is_empty());
    }
}
