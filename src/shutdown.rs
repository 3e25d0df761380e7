//! Stopping, as a small type passed down (as in mini-redis): the runner and each dispatcher hold a
//! [`Shutdown`]; whoever owns the [`Stopper`] tells them all to stop. Waiting, checking and "sleep unless
//! stopping" are the only three things any loop needs.

use std::time::Duration;
use tokio::sync::watch;

/// Tells every [`Shutdown`] made from it to stop. Dropping it stops them too.
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// One listener's view of the stop signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Stopper {
    /// A new signal and its first listener.
    pub fn new() -> (Stopper, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Stopper(tx), Shutdown(rx))
    }

    /// Tells every listener to stop (idempotent).
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }

    /// Another listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether stopping was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Returns once stopping is asked for (or the [`Stopper`] is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `delay` unless stopping is asked for first; true when stopping.
    pub async fn sleep_unless_stopping(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.wait() => true,
            _ = tokio::time::sleep(delay) => self.is_stopping(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_early_when_stopping_and_every_listener_sees_it() {
        let (stopper, mut a) = Stopper::new();
        let mut b = stopper.subscribe();
        assert!(!a.is_stopping());
        assert!(!a.sleep_unless_stopping(Duration::from_millis(1)).await);
        stopper.stop();
        assert!(a.sleep_unless_stopping(Duration::from_secs(3600)).await);
        b.wait().await;
        assert!(b.is_stopping());
    }

    #[tokio::test]
    async fn dropping_the_stopper_releases_waiters() {
        let (stopper, mut a) = Stopper::new();
        drop(stopper);
        a.wait().await;
        assert!(a.is_stopping());
    }
}
