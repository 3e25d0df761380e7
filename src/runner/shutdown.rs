//! Stopping, as a small type passed down (as in mini-redis): the runner and each dispatcher hold a
//! [`Shutdown`]; whoever owns the [`Stopper`] tells them all to stop (tokio-util's `CancellationToken`, each
//! listener a child token). Waiting, checking and "sleep unless stopping" are the only three things any loop
//! needs. A [`StopDeadline`] bounds the whole stop of a process, whatever the network does: each step may wait
//! on NATS, and systemd or Kubernetes wait for the exit.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Tells every [`Shutdown`] made from it to stop. Dropping it stops them too.
#[derive(Debug)]
pub struct Stopper {
    token: CancellationToken,
    _on_drop: DropGuard,
}

/// One listener's view of the stop signal (a child of the [`Stopper`]'s token).
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

impl Stopper {
    /// A new signal and its first listener.
    pub fn new() -> (Stopper, Shutdown) {
        let token = CancellationToken::new();
        let stopper = Stopper { _on_drop: token.clone().drop_guard(), token };
        let first = stopper.subscribe();
        (stopper, first)
    }

    /// Tells every listener to stop (idempotent).
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Another listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.token.child_token())
    }
}

impl Shutdown {
    /// Whether stopping was asked for.
    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Returns once stopping is asked for (or the [`Stopper`] is gone).
    pub async fn wait(&mut self) {
        self.0.cancelled().await
    }

    /// Sleeps for `delay` unless stopping is asked for first; true when stopping.
    pub async fn sleep_unless_stopping(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.0.cancelled() => true,
            _ = tokio::time::sleep(delay) => self.is_stopping(),
        }
    }
}

/// Ends a stop that takes too long: armed when the stop starts, it runs its expiry (for `riposte run`: log what
/// is abandoned, exit the process) once `bound` has passed, on a thread of its own so that nothing the async
/// runtime waits on can hold it. The stop names each step as it starts, so the expiry can say which one hung.
#[derive(Debug, Clone)]
pub struct StopDeadline {
    step: Arc<Mutex<(&'static str, bool)>>,
}

impl StopDeadline {
    /// Arms a deadline `bound` from now, starting with step `first`; `on_expiry` gets the step unfinished then
    /// (it is not called when [`StopDeadline::done`] came first).
    pub fn arm(bound: Duration, first: &'static str, on_expiry: impl FnOnce(&'static str) + Send + 'static) -> Self {
        let step = Arc::new(Mutex::new((first, false)));
        let watched = step.clone();
        std::thread::spawn(move || {
            std::thread::sleep(bound);
            let (what, done) = *watched.lock().unwrap();
            if !done {
                on_expiry(what);
            }
        });
        StopDeadline { step }
    }

    /// The step starting now.
    pub fn step(&self, what: &'static str) {
        self.step.lock().unwrap().0 = what;
    }

    /// The stop finished: the expiry will not run.
    pub fn done(&self) {
        self.step.lock().unwrap().1 = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_past_its_deadline_is_ended_naming_the_step_that_hung_and_a_finished_one_is_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let deadline = StopDeadline::arm(Duration::from_millis(50), "draining", move |what| tx.send(what).unwrap());
        deadline.step("removing the heartbeat");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("removing the heartbeat"));

        let (tx, rx) = std::sync::mpsc::channel();
        let deadline = StopDeadline::arm(Duration::from_millis(50), "draining", move |what| tx.send(what).unwrap());
        deadline.done();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a finished stop is not ended");
    }

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
