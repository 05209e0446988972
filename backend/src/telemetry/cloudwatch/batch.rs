//! PutLogEvents' limits, applied purely: events are cut to the size one
//! event may have, put in time order, and split into calls that each hold
//! at most 10,000 events, 1,048,576 bytes (26 bytes of overhead counted per
//! event) and 24 hours.

/// Events in one PutLogEvents call.
pub const MAX_EVENTS: usize = 10_000;
/// Bytes in one call: every message in UTF-8 plus [`EVENT_OVERHEAD`] each.
pub const MAX_BYTES: usize = 1_048_576;
/// What CloudWatch adds to each event when it counts a call's size.
pub const EVENT_OVERHEAD: usize = 26;
/// Bytes one event may take, its overhead included.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Milliseconds between the oldest and the newest event of one call, at most.
pub const MAX_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// Appended to a message cut to fit [`MAX_EVENT_BYTES`].
pub const TRUNCATED: &str = "…[truncated]";

/// One log line as CloudWatch stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub message: String,
}

impl LogEvent {
    /// An event whose message is cut, on a character boundary and with a
    /// marker, when it would be larger than CloudWatch accepts.
    pub fn new(timestamp_ms: i64, message: String) -> LogEvent {
        LogEvent {
            timestamp_ms,
            message: fit(message),
        }
    }

    /// What this event counts for in a call's size.
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

fn fit(mut message: String) -> String {
    let room = MAX_EVENT_BYTES - EVENT_OVERHEAD;
    if message.len() <= room {
        return message;
    }
    let mut cut = room - TRUNCATED.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(TRUNCATED);
    message
}

/// Splits events into PutLogEvents calls, in time order (events logged at
/// the same millisecond keep their order), each within every limit.
pub fn split(mut events: Vec<LogEvent>) -> Vec<Vec<LogEvent>> {
    events.sort_by_key(|event| event.timestamp_ms);
    let mut calls = Vec::new();
    let mut call: Vec<LogEvent> = Vec::new();
    let mut bytes = 0;
    for event in events {
        let full = call.len() == MAX_EVENTS
            || bytes + event.size() > MAX_BYTES
            || call
                .first()
                .is_some_and(|first| event.timestamp_ms - first.timestamp_ms >= MAX_SPAN_MS);
        if full {
            calls.push(std::mem::take(&mut call));
            bytes = 0;
        }
        bytes += event.size();
        call.push(event);
    }
    if !call.is_empty() {
        calls.push(call);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(timestamp_ms: i64, bytes: usize) -> LogEvent {
        LogEvent::new(timestamp_ms, "x".repeat(bytes))
    }

    fn total_bytes(call: &[LogEvent]) -> usize {
        call.iter().map(LogEvent::size).sum()
    }

    #[test]
    fn at_most_ten_thousand_events_a_call() {
        let calls = split((0..10_001).map(|i| event(i, 1)).collect());
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].len(), MAX_EVENTS);
        assert_eq!(calls[1].len(), 1);
        assert_eq!(calls[1][0].timestamp_ms, 10_000);
        assert_eq!(split((0..10_000).map(|i| event(i, 1)).collect()).len(), 1);
    }

    #[test]
    fn bytes_count_the_overhead_of_every_event() {
        // 1,048,576 / 1,024 = 1,024 events of exactly 1 KiB with overhead fit.
        let payload = 1024 - EVENT_OVERHEAD;
        let calls = split((0..1024).map(|i| event(i, payload)).collect());
        assert_eq!(calls.len(), 1);
        assert_eq!(total_bytes(&calls[0]), MAX_BYTES);
        // One byte more, and the last event goes to a second call.
        let mut events: Vec<LogEvent> = (0..1024).map(|i| event(i, payload)).collect();
        events[0] = event(0, payload + 1);
        let calls = split(events);
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [1023, 1]);
        assert!(calls.iter().all(|call| total_bytes(call) <= MAX_BYTES));
        // Without the overhead these 1,050 messages (1,047,900 bytes) would fit in one.
        let calls = split((0..1050).map(|i| event(i, 998)).collect());
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn four_largest_events_fill_a_call() {
        let calls = split((0..9).map(|i| event(i, MAX_EVENT_BYTES)).collect());
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 1]);
        assert!(calls.iter().all(|call| total_bytes(call) <= MAX_BYTES));
    }

    #[test]
    fn a_call_spans_less_than_a_day() {
        let calls = split(vec![
            event(0, 1),
            event(MAX_SPAN_MS - 1, 1),
            event(MAX_SPAN_MS, 1),
            event(2 * MAX_SPAN_MS + 5, 1),
        ]);
        let stamps: Vec<Vec<i64>> = calls
            .iter()
            .map(|call| call.iter().map(|e| e.timestamp_ms).collect())
            .collect();
        assert_eq!(
            stamps,
            [
                vec![0, MAX_SPAN_MS - 1],
                vec![MAX_SPAN_MS],
                vec![2 * MAX_SPAN_MS + 5]
            ]
        );
    }

    #[test]
    fn events_are_put_in_time_order_and_ties_keep_their_order() {
        let events = vec![
            LogEvent::new(30, "c".into()),
            LogEvent::new(10, "a".into()),
            LogEvent::new(20, "b1".into()),
            LogEvent::new(20, "b2".into()),
        ];
        let calls = split(events);
        let messages: Vec<&str> = calls[0].iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["a", "b1", "b2", "c"]);
    }

    #[test]
    fn an_oversized_event_is_cut_with_a_marker() {
        let cut = event(1, 300 * 1024);
        assert_eq!(cut.size(), MAX_EVENT_BYTES);
        assert!(cut.message.ends_with(TRUNCATED));
        let fits = event(1, MAX_EVENT_BYTES - EVENT_OVERHEAD);
        assert!(!fits.message.ends_with(TRUNCATED));
        assert_eq!(fits.size(), MAX_EVENT_BYTES);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // Three-byte characters put every possible cut inside one at some offset.
        for shift in 0..3 {
            let message = format!("{}{}", "x".repeat(shift), "€".repeat(100_000));
            let cut = LogEvent::new(1, message);
            assert!(cut.size() <= MAX_EVENT_BYTES);
            assert!(cut.size() > MAX_EVENT_BYTES - 3);
            let body = cut.message.strip_suffix(TRUNCATED).unwrap();
            assert!(body.ends_with('€'));
        }
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(split(Vec::new()).is_empty());
    }
}
