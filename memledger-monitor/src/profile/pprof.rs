//! A [`Profile`] as pprof's `profile.proto`, gzipped, written by hand: the format is a handful of
//! varint and length-delimited fields (github.com/google/pprof, `proto/profile.proto`).

use std::collections::HashMap;
use std::io::Write;

use super::{scope_label, Profile, ProfileValue};

impl Profile {
    /// The profile as [`to_pprof`](Profile::to_pprof) writes it, with `default` as the sample
    /// type a reader shows unless told otherwise (`go tool pprof` without `-sample_index`):
    /// [`AllocatedBytes`](ProfileValue::AllocatedBytes) for an "allocs" profile, as Go's
    /// `/debug/pprof/allocs` serves. [`GrowthBytes`](ProfileValue::GrowthBytes) adds a fifth
    /// sample type, `growth_bytes` (each site's live bytes grown since the baseline of a
    /// [`since`](Profile::since) profile, shrunk sites 0), and makes it the default.
    /// `to_pprof_as(ProfileValue::LiveBytes)` is `to_pprof()`, byte for byte.
    pub fn to_pprof_as(&self, default: ProfileValue) -> Vec<u8> {
        encode_as(self, default)
    }
}

/// Field numbers of `perftools.profiles.Profile`.
mod field {
    pub const SAMPLE_TYPE: u32 = 1;
    pub const SAMPLE: u32 = 2;
    pub const MAPPING: u32 = 3;
    pub const LOCATION: u32 = 4;
    pub const FUNCTION: u32 = 5;
    pub const STRING_TABLE: u32 = 6;
    pub const PERIOD_TYPE: u32 = 11;
    pub const PERIOD: u32 = 12;
    pub const COMMENT: u32 = 13;
    pub const DEFAULT_SAMPLE_TYPE: u32 = 14;
}

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// A varint field (written even when 0: readers take a missing one as 0 anyway).
    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }

    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    /// A packed repeated varint field.
    fn packed(&mut self, field: u32, values: impl IntoIterator<Item = u64>) {
        let mut inner = Message::default();
        for v in values {
            inner.varint(v);
        }
        self.bytes(field, &inner.0);
    }
}

/// Strings, each written once; index 0 is the empty string, as the format requires.
struct Strings {
    index: HashMap<String, i64>,
    table: Vec<String>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            index: HashMap::from([(String::new(), 0)]),
            table: vec![String::new()],
        }
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.index.insert(s.to_string(), i);
        self.table.push(s.to_string());
        i
    }
}

/// A `ValueType` message.
fn value_type(strings: &mut Strings, kind: &str, unit: &str) -> Message {
    let mut m = Message::default();
    m.int(1, strings.id(kind));
    m.int(2, strings.id(unit));
    m
}

/// Encodes `profile` and gzips it.
pub(crate) fn encode(profile: &Profile) -> Vec<u8> {
    encode_as(profile, ProfileValue::LiveBytes)
}

/// Encodes `profile` with `default` as its default sample type, and gzips it.
fn encode_as(profile: &Profile, default: ProfileValue) -> Vec<u8> {
    let growth = default == ProfileValue::GrowthBytes;
    let default_name = match default {
        ProfileValue::LiveBytes => "live_bytes",
        ProfileValue::LiveBlocks => "live_blocks",
        ProfileValue::AllocatedBytes => "allocated_bytes",
        ProfileValue::GrowthBytes => "growth_bytes",
    };
    let mut strings = Strings::new();
    let mut out = Message::default();
    let growth_type = [("growth_bytes", "bytes")];
    for (kind, unit) in [
        ("live_bytes", "bytes"),
        ("live_blocks", "count"),
        ("allocated_bytes", "bytes"),
        ("allocated_blocks", "count"),
    ]
    .into_iter()
    .chain(growth_type.into_iter().filter(|_| growth))
    {
        let m = value_type(&mut strings, kind, unit);
        out.message(field::SAMPLE_TYPE, m);
    }
    // Functions by (name, system name, file), locations by (address, frames).
    let mut functions: HashMap<(String, String, String), u64> = HashMap::new();
    let mut function_messages: Vec<Message> = Vec::new();
    let mut locations: HashMap<Vec<(u64, u64, i64)>, u64> = HashMap::new();
    let mut location_messages: Vec<Message> = Vec::new();
    // A function's `name` is what pprof shows, `system_name` the whole demangled name; the
    // frames that are no function (the scope, the placeholders) have no system name.
    let mut function_id = |strings: &mut Strings, name: &str, system: &str, file: &str| -> u64 {
        let key = (name.to_string(), system.to_string(), file.to_string());
        if let Some(&id) = functions.get(&key) {
            return id;
        }
        let id = functions.len() as u64 + 1;
        functions.insert(key, id);
        let mut m = Message::default();
        m.uint(1, id);
        m.int(2, strings.id(name));
        m.int(3, strings.id(system));
        m.int(4, strings.id(file));
        function_messages.push(m);
        id
    };
    let binary = main_binary();
    let mapping_of = |address: u64| -> u64 {
        match &binary {
            Some(b) if (b.start..b.limit).contains(&address) => 1,
            _ => 0,
        }
    };
    let label_key = strings.id("scope");
    for scope in &profile.scopes {
        let scope_name = format!("[scope {}]", scope_label(&scope.path));
        let scope_function = function_id(&mut strings, &scope_name, "", "");
        let scope_value = strings.id(scope_label(&scope.path));
        for site in &scope.sites {
            // Frames sharing an address (inlined ones) make one location with several lines,
            // innermost first, as the format orders them.
            let mut groups: Vec<(u64, Vec<(u64, i64)>)> = Vec::new();
            for frame in &site.frames {
                let function = function_id(
                    &mut strings,
                    &readable_name(&frame.function),
                    &frame.function,
                    frame.file.as_deref().unwrap_or(""),
                );
                let line = (function, i64::from(frame.line.unwrap_or(0)));
                match groups.last_mut() {
                    Some((address, lines)) if *address == frame.address => lines.push(line),
                    _ => groups.push((frame.address, vec![line])),
                }
            }
            if site.frames.is_empty() {
                let placeholder = function_id(&mut strings, &site.label(), "", "");
                groups.push((0, vec![(placeholder, 0)]));
            }
            groups.push((0, vec![(scope_function, 0)]));
            let mut location_ids = Vec::with_capacity(groups.len());
            for (address, lines) in groups {
                let key: Vec<(u64, u64, i64)> =
                    lines.iter().map(|&(f, l)| (address, f, l)).collect();
                let next = locations.len() as u64 + 1;
                let id = *locations.entry(key).or_insert_with(|| {
                    let mut m = Message::default();
                    m.uint(1, next);
                    if address != 0 {
                        let mapping = mapping_of(address);
                        if mapping != 0 {
                            m.uint(2, mapping);
                        }
                        m.uint(3, address);
                    }
                    for &(function, line) in &lines {
                        let mut l = Message::default();
                        l.uint(1, function);
                        l.int(2, line);
                        m.message(4, l);
                    }
                    location_messages.push(m);
                    next
                });
                location_ids.push(id);
            }
            let mut sample = Message::default();
            sample.packed(1, location_ids);
            let growth_value = [ProfileValue::GrowthBytes.of(site)];
            sample.packed(
                2,
                [
                    site.live.bytes,
                    site.live.blocks,
                    site.allocated.bytes,
                    site.allocated.blocks,
                ]
                .into_iter()
                .chain(growth_value.into_iter().filter(|_| growth)),
            );
            let mut label = Message::default();
            label.int(1, label_key);
            label.int(2, scope_value);
            sample.message(3, label);
            out.message(field::SAMPLE, sample);
        }
    }
    // The main binary, so that pprof names it ("Main binary filename not available" without
    // one) and knows its functions, files and lines are given: it symbolizes nothing again.
    if let Some(b) = &binary {
        let mut m = Message::default();
        m.uint(1, 1);
        m.uint(2, b.start);
        m.uint(3, b.limit);
        m.uint(4, b.offset);
        m.int(5, strings.id(&b.file));
        m.uint(7, 1);
        m.uint(8, u64::from(!profile.missing_line_tables));
        m.uint(9, u64::from(!profile.missing_line_tables));
        m.uint(10, u64::from(!profile.missing_line_tables));
        out.message(field::MAPPING, m);
    }
    for m in location_messages {
        out.message(field::LOCATION, m);
    }
    for m in function_messages {
        out.message(field::FUNCTION, m);
    }
    let note = profile
        .missing_line_tables
        .then(|| strings.id(&format!("memledger: {}", super::LINE_TABLES_NOTE)));
    let period = value_type(&mut strings, "space", "bytes");
    let default_type = strings.id(default_name);
    for s in &strings.table {
        out.bytes(field::STRING_TABLE, s.as_bytes());
    }
    out.message(field::PERIOD_TYPE, period);
    out.int(field::PERIOD, profile.rate as i64);
    if let Some(note) = note {
        out.packed(field::COMMENT, [note as u64]);
    }
    out.int(field::DEFAULT_SAMPLE_TYPE, default_type);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a `Vec` cannot fail.
    let _ = gz.write_all(&out.0);
    gz.finish().unwrap_or_default()
}

/// A function's name as pprof shows it whole. pprof takes a name with `<...>` and `(...)` for a
/// demangled C++ one and cuts them out as template arguments and parameters, so that
/// `<alloc::vec::Vec<T> as core::clone::Clone>::clone` becomes `::clone`: here a qualified
/// path's brackets go (`alloc::vec::Vec as core::clone::Clone::clone`) and generic arguments
/// with theirs (`hashbrown::raw::RawTable::reserve_rehash`). pprof leaves a name alone when it
/// differs from the function's system name, which keeps the whole demangled name.
pub(crate) fn readable_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    // For each `<` open: whether it opens a qualified path (its inside kept) or generic
    // arguments (dropped, with everything nested in them).
    let mut open: Vec<bool> = Vec::new();
    let mut dropped = 0usize;
    for (at, c) in full.char_indices() {
        match c {
            '<' if dropped > 0 => {
                open.push(false);
                dropped += 1;
            }
            '<' => {
                let inside = closing(&full[at + 1..]).map_or("", |end| &full[at + 1..at + 1 + end]);
                let starts_path = out.is_empty() || out.ends_with([' ', '&', '*', '(', ',', '[']);
                let qualifies = out.ends_with("::")
                    && (inside.starts_with("impl ") || at_depth_zero(inside, " as "));
                if starts_path || qualifies {
                    open.push(true);
                } else {
                    // Generic arguments, a turbofish's `::` with them.
                    if out.ends_with("::") {
                        out.truncate(out.len() - 2);
                    }
                    open.push(false);
                    dropped = 1;
                }
            }
            // The arrow of `fn() -> T` closes nothing.
            '>' if full[..at].ends_with('-') && dropped == 0 => out.push(c),
            '>' if full[..at].ends_with('-') => {}
            '>' => match open.pop() {
                Some(true) => {}
                Some(false) => dropped -= 1,
                None => out.push(c),
            },
            _ if dropped == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Where the `>` that closes a `<` just before `s` is in `s`.
fn closing(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if s[..at].ends_with('-') => {}
            '>' if depth == 0 => return Some(at),
            '>' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Whether `needle` is in `s` outside any `<...>`.
fn at_depth_zero(s: &str, needle: &str) -> bool {
    let mut depth = 0usize;
    for (at, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if s[..at].ends_with('-') => {}
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 && s[at..].starts_with(needle) => return true,
            _ => {}
        }
    }
    false
}

/// The program's own binary and where it is mapped.
struct Binary {
    file: String,
    start: u64,
    limit: u64,
    offset: u64,
}

/// The running binary: its path, and on Linux the addresses it is mapped at (from
/// `/proc/self/maps`), so that locations inside it name it as their mapping.
fn main_binary() -> Option<Binary> {
    let exe = std::env::current_exe().ok()?;
    let file = exe.display().to_string();
    let mut binary = Binary {
        file,
        start: 0,
        limit: 0,
        offset: 0,
    };
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        // `start-end perms offset dev inode path`, the binary's segments among them.
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(_), Some(offset), Some(_), Some(_), Some(path)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            if path != binary.file {
                continue;
            }
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end), Ok(offset)) = (
                u64::from_str_radix(start, 16),
                u64::from_str_radix(end, 16),
                u64::from_str_radix(offset, 16),
            ) else {
                continue;
            };
            if binary.limit == 0 || start < binary.start {
                binary.start = start;
                binary.offset = offset;
            }
            binary.limit = binary.limit.max(end);
        }
    }
    Some(binary)
}

#[cfg(test)]
mod tests {
    use super::readable_name;

    /// Names as `backtrace` demangles them (`{:#}`), and as pprof shows them.
    #[test]
    fn names_keep_their_type_and_trait_without_brackets() {
        for (full, readable) in [
            ("demo::Service::log_query", "demo::Service::log_query"),
            (
                "alloc::raw_vec::RawVecInner<A>::finish_grow",
                "alloc::raw_vec::RawVecInner::finish_grow",
            ),
            (
                "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
                "alloc::vec::Vec as core::clone::Clone::clone",
            ),
            (
                "<rayon::iter::map::MapFolder<C,F> as rayon::iter::plumbing::Folder<T>>\
                 ::consume_iter::with::{{closure}}",
                "rayon::iter::map::MapFolder as rayon::iter::plumbing::Folder\
                 ::consume_iter::with::{{closure}}",
            ),
            (
                "<&mut alloc::string::String as core::fmt::Write>::write_fmt",
                "&mut alloc::string::String as core::fmt::Write::write_fmt",
            ),
            (
                "<[u8] as alloc::slice::hack::ConvertVec>::to_vec",
                "[u8] as alloc::slice::hack::ConvertVec::to_vec",
            ),
            ("<[T]>::to_vec_in", "[T]::to_vec_in"),
            (
                "core::ops::function::impls::<impl core::ops::function::FnMut<A> for &F>::call_mut",
                "core::ops::function::impls::impl core::ops::function::FnMut for &F::call_mut",
            ),
            (
                "core::ptr::drop_in_place<alloc::vec::Vec<u8>>",
                "core::ptr::drop_in_place",
            ),
            (
                "<alloc::boxed::Box<dyn core::ops::function::Fn(&str) -> bool> as \
                 core::ops::function::FnOnce<Args>>::call_once",
                "alloc::boxed::Box as core::ops::function::FnOnce::call_once",
            ),
            ("std::thread::spawn::<F, T>", "std::thread::spawn"),
            (
                "<<A as B>::Out as c::Sink>::write",
                "A as B::Out as c::Sink::write",
            ),
        ] {
            assert_eq!(readable_name(full), readable, "{full}");
        }
    }
}
