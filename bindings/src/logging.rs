//! Forwarding the library's `tracing` output to the host's logger
//! (Logcat, `os_log`, SLF4J…) through a foreign trait the app implements.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use crate::error::StarlingError;

/// How much the library logs. Each level includes the ones above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    /// Nothing at all (the default).
    Off,
    /// Failures the app should know about.
    Error,
    /// Unexpected but handled situations (rejected data, retries).
    Warn,
    /// Milestones: node opened, identity created, sync sessions.
    Info,
    /// Details useful while developing an app.
    Debug,
    /// Everything, very verbose.
    Trace,
}

impl LogLevel {
    fn rank(self) -> u8 {
        match self {
            LogLevel::Off => 0,
            LogLevel::Error => 1,
            LogLevel::Warn => 2,
            LogLevel::Info => 3,
            LogLevel::Debug => 4,
            LogLevel::Trace => 5,
        }
    }

    fn of(level: &tracing::Level) -> LogLevel {
        match *level {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

/// One log line from the library.
#[derive(Debug, Clone, uniffi::Record)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it came from, a Rust module path such as `starling_core::store`;
    /// usable as a log tag.
    pub target: String,
    /// The message, with any structured fields appended as `key=value`.
    pub message: String,
}

/// The app's logger. Implement it to route the library's log lines into
/// Logcat, `os_log`, SLF4J or a file, and install it with `setLogger`.
///
/// `log` may be called from any thread, concurrently; it must not block for
/// long. If it throws, the line is dropped. Calls made while handling a record (for example
/// a Starling call inside `log`) are not logged again.
#[uniffi::export(foreign)]
pub trait LogSink: Send + Sync {
    /// Receives one record.
    fn log(&self, record: LogRecord) -> Result<(), StarlingError>;
}

static LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: RwLock<Option<Arc<dyn LogSink>>> = RwLock::new(None);
static INSTALL: Once = Once::new();

thread_local! {
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Sets how much the library logs. With no logger installed, lines go to
/// standard error (visible in JVM tests and the Xcode console, dropped on
/// Android).
#[uniffi::export]
pub fn set_log_level(level: LogLevel) {
    install();
    LEVEL.store(level.rank(), Ordering::Relaxed);
}

/// Installs `sink` as the destination of the library's log lines, at `level`
/// and above. Replaces any previous logger.
///
/// Note: this installs the library's `tracing` subscriber as the process-wide
/// default the first time it is called; if another Rust library in the same
/// app already did so, lines go to that subscriber instead.
#[uniffi::export]
pub fn set_logger(sink: Arc<dyn LogSink>, level: LogLevel) {
    install();
    if let Ok(mut slot) = SINK.write() {
        *slot = Some(sink);
    }
    LEVEL.store(level.rank(), Ordering::Relaxed);
}

/// Removes the logger installed by `setLogger` (releasing the app object)
/// and turns logging off.
#[uniffi::export]
pub fn clear_logger() {
    LEVEL.store(0, Ordering::Relaxed);
    if let Ok(mut slot) = SINK.write() {
        *slot = None;
    }
}

fn install() {
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ForwardLayer);
        // Fails only if the embedding process already set a global default.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

fn level_allows(level: &tracing::Level) -> bool {
    LogLevel::of(level).rank() <= LEVEL.load(Ordering::Relaxed)
}

struct ForwardLayer;

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn register_callsite(&self, _meta: &'static Metadata<'static>) -> Interest {
        // The level can change at any time: ask `enabled` on every event.
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_allows(meta.level())
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if IN_SINK.with(Cell::get) {
            return;
        }
        let meta = event.metadata();
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let record = LogRecord {
            level: LogLevel::of(meta.level()),
            target: meta.target().to_string(),
            message: visitor.finish(),
        };
        let sink = SINK.read().ok().and_then(|s| s.clone());
        IN_SINK.with(|f| f.set(true));
        match sink {
            // A failing logger has nowhere to report to; drop the line.
            Some(sink) => {
                let _ = sink.log(record);
            }
            None => eprintln!("[{:?} {}] {}", record.level, record.target, record.message),
        }
        IN_SINK.with(|f| f.set(false));
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}
