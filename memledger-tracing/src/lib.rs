//! A `tracing_subscriber` layer that books what a span does to a memledger scope.
//!
//! A program already instrumented with `tracing` gets a per-component breakdown without new
//! code: while a span is entered, on whichever thread, allocations are booked to the span's scope.
//!
//! - [`ScopeLayer::new`] gives a scope to the spans that carry a `mem.scope` field, named by its
//!   value: `info_span!("build", mem.scope = "project_indexes")`. Other spans are left alone.
//! - [`ScopeLayer::field`] uses another field name; [`ScopeLayer::span_names`] gives every span a
//!   scope named after the span.
//!
//! A span's scope is a child of the scope of its nearest ancestor span that has one, else of the
//! scope current on the thread where the span was created; it is fixed when the span is created.
//! Entering the span later, on any thread, enters that scope, so a span that follows a task across
//! a runtime's threads keeps booking to it.
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() {
//! let subscriber = tracing_subscriber::registry().with(memledger_tracing::ScopeLayer::new());
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("build", mem.scope = "project_indexes");
//!     let index = span.in_scope(|| vec![0u8; 4096]);
//!     let snap = memledger::snapshot();
//!     assert_eq!(snap.scope("project_indexes").unwrap().live_bytes, 4096);
//!     # drop(index);
//! });
//! # }
//! ```
//!
//! Scopes are never unregistered: give scopes to spans whose names (or `mem.scope` values) come
//! from a small set, not to one span per request id. Past [`MAX_SCOPES`](memledger::MAX_SCOPES) the
//! rest is booked to the overflow scope.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use ::tracing::field::{Field, Visit};
use ::tracing::span::{Attributes, Id};
use ::tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use memledger::{ScopeGuard, ScopeHandle};

/// How spans are given scopes.
#[derive(Clone, Copy, Debug)]
enum Naming {
    /// By the value of this field; spans without it get none.
    Field(&'static str),
    /// By the span's name.
    SpanName,
}

/// A layer that enters a span's scope while the span is entered. See the [module docs](self).
///
/// Spans are expected to exit in the reverse order of their entries on a thread, as tracing's
/// guards do. A span that exits while spans entered after it are still entered ends their scopes
/// too (as an outer [`ScopeGuard`] does), until they are entered again.
#[derive(Clone, Copy, Debug)]
pub struct ScopeLayer {
    naming: Naming,
    /// Tells this layer's entries from another's on the same thread: span ids are unique only
    /// within one subscriber.
    id: u64,
}

/// Ids of layers.
static NEXT_LAYER: AtomicU64 = AtomicU64::new(0);

impl Default for ScopeLayer {
    fn default() -> Self {
        ScopeLayer::new()
    }
}

impl ScopeLayer {
    /// Spans with a `mem.scope` field get the scope it names.
    pub fn new() -> ScopeLayer {
        ScopeLayer::field("mem.scope")
    }

    /// Spans with the field `name` get the scope it names.
    pub fn field(name: &'static str) -> ScopeLayer {
        ScopeLayer::with(Naming::Field(name))
    }

    /// Every span gets a scope named after the span.
    pub fn span_names() -> ScopeLayer {
        ScopeLayer::with(Naming::SpanName)
    }

    fn with(naming: Naming) -> ScopeLayer {
        ScopeLayer {
            naming,
            // Relaxed: only distinctness matters.
            id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The scope of a span, kept in its extensions.
struct SpanScope(ScopeHandle);

/// Finds one field's value among a span's fields.
struct FieldValue {
    name: &'static str,
    value: Option<String>,
}

impl Visit for FieldValue {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.name {
            self.value = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == self.name && self.value.is_none() {
            self.value = Some(format!("{value:?}"));
        }
    }
}

std::thread_local! {
    /// The guards of the spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<(u64, Id, ScopeGuard)>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for ScopeLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = match self.naming {
            Naming::SpanName => Some(attrs.metadata().name().to_string()),
            Naming::Field(field) => {
                let mut visitor = FieldValue {
                    name: field,
                    value: None,
                };
                attrs.record(&mut visitor);
                visitor.value
            }
        };
        let Some(name) = name else { return };
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .scope()
            .skip(1)
            .find_map(|ancestor| ancestor.extensions().get::<SpanScope>().map(|s| s.0))
            .unwrap_or_else(ScopeHandle::current);
        let _own = memledger::__private::own_scope();
        let handle = parent.child(&name);
        span.extensions_mut().insert(SpanScope(handle));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(handle) = span.extensions().get::<SpanScope>().map(|s| s.0) else {
            return;
        };
        let guard = handle.enter();
        let _ = ENTERED.try_with(|entered| {
            let _own = memledger::__private::own_scope();
            entered.borrow_mut().push((self.id, id.clone(), guard));
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ = ENTERED.try_with(|entered| {
            let mut entered = entered.borrow_mut();
            let mine = |(layer, entered_id, _): &(u64, Id, ScopeGuard)| {
                *layer == self.id && entered_id == id
            };
            if let Some(at) = entered.iter().rposition(mine) {
                let (_, _, guard) = entered.remove(at);
                drop(entered);
                drop(guard);
            }
        });
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
