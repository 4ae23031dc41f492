//! A wake-up between tasks of one worker: one waiting task, a remembered "set" so no
//! notification is lost, and no lock or atomic (tokio's Notify takes a mutex per notify, which
//! showed up per request). Not `Send`: both sides live on the same worker thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Signal {
    /// Wakes the waiting task, or the next one to wait.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Completes once `notify` has been called since the last completion.
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

pub struct Notified<'a>(&'a Signal);

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let s = self.0;
        if s.set.replace(false) {
            return Poll::Ready(());
        }
        let mut w = s.waiter.borrow_mut();
        match w.as_ref() {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[tokio::test]
    async fn a_notify_before_the_wait_is_kept() {
        let s = Signal::default();
        s.notify();
        s.notified().await;
        let s = Rc::new(Signal::default());
        let local = tokio::task::LocalSet::new();
        let s2 = s.clone();
        local
            .run_until(async move {
                let t = tokio::task::spawn_local(async move { s2.notified().await });
                tokio::task::yield_now().await;
                s.notify();
                t.await.unwrap();
            })
            .await;
    }
}
