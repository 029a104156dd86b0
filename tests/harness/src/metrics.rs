//! Metrics (`proxy_define_metric` and friends), shared by every VM of a host: in Envoy, a metric
//! defined under the same name by several workers is one stat.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::abi::MetricKind;
use crate::shared_data::lock;

/// A metric's current value as the test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
    /// Every value recorded, in order.
    Histogram(Vec<u64>),
}

#[derive(Debug)]
struct Metric {
    name: String,
    kind: MetricKind,
    value: MetricValue,
}

/// Why a metric call was refused (`BadArgument` or `NotFound` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_name: HashMap<String, u32>,
    metrics: Vec<Metric>,
}

impl Metrics {
    /// Defines a metric, or returns the id of the one already defined under that name.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> Result<u32, MetricError> {
        let mut inner = lock(&self.inner);
        if let Some(id) = inner.by_name.get(name).copied() {
            let same_kind = inner.metrics.get(index(id)).is_some_and(|m| m.kind == kind);
            return if same_kind {
                Ok(id)
            } else {
                Err(MetricError::BadArgument)
            };
        }
        let value = match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram(Vec::new()),
        };
        inner.metrics.push(Metric {
            name: name.to_owned(),
            kind,
            value,
        });
        // Ids start at 1 so that 0 never names a metric (filters use 0 as "undefined").
        let id = u32::try_from(inner.metrics.len()).map_err(|_| MetricError::BadArgument)?;
        inner.by_name.insert(name.to_owned(), id);
        Ok(id)
    }

    pub(crate) fn increment(&self, id: u32, offset: i64) -> Result<(), MetricError> {
        let mut inner = lock(&self.inner);
        let metric = inner
            .metrics
            .get_mut(index(id))
            .ok_or(MetricError::NotFound)?;
        match &mut metric.value {
            MetricValue::Counter(v) => {
                // Counters only go up (Envoy refuses a negative offset).
                let by = u64::try_from(offset).map_err(|_| MetricError::BadArgument)?;
                *v = v.saturating_add(by);
            }
            MetricValue::Gauge(v) => *v = v.saturating_add(offset),
            MetricValue::Histogram(_) => return Err(MetricError::BadArgument),
        }
        Ok(())
    }

    pub(crate) fn record(&self, id: u32, value: u64) -> Result<(), MetricError> {
        let mut inner = lock(&self.inner);
        let metric = inner
            .metrics
            .get_mut(index(id))
            .ok_or(MetricError::NotFound)?;
        match &mut metric.value {
            MetricValue::Counter(v) => *v = value,
            MetricValue::Gauge(v) => *v = i64::try_from(value).unwrap_or(i64::MAX),
            MetricValue::Histogram(values) => values.push(value),
        }
        Ok(())
    }

    pub(crate) fn get(&self, id: u32) -> Result<u64, MetricError> {
        let inner = lock(&self.inner);
        let metric = inner.metrics.get(index(id)).ok_or(MetricError::NotFound)?;
        match &metric.value {
            MetricValue::Counter(v) => Ok(*v),
            // The ABI returns a u64: a gauge's bits are passed through, as Envoy does.
            MetricValue::Gauge(v) => Ok(u64::from_ne_bytes(v.to_ne_bytes())),
            MetricValue::Histogram(_) => Err(MetricError::BadArgument),
        }
    }

    /// The metric named `name`, as the test sees it.
    pub(crate) fn by_name(&self, name: &str) -> Option<MetricValue> {
        let inner = lock(&self.inner);
        let id = inner.by_name.get(name)?;
        inner.metrics.get(index(*id)).map(|m| m.value.clone())
    }

    /// Every metric, by name.
    pub(crate) fn all(&self) -> Vec<(String, MetricValue)> {
        let inner = lock(&self.inner);
        inner
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect()
    }
}

fn index(id: u32) -> usize {
    usize::try_from(id).map_or(usize::MAX, |i| i.wrapping_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_histograms() {
        let m = Metrics::default();
        let c = m.define(MetricKind::Counter, "c").unwrap();
        assert_eq!(m.define(MetricKind::Counter, "c"), Ok(c));
        assert_eq!(
            m.define(MetricKind::Gauge, "c"),
            Err(MetricError::BadArgument)
        );
        m.increment(c, 2).unwrap();
        m.increment(c, 3).unwrap();
        assert_eq!(m.increment(c, -1), Err(MetricError::BadArgument));
        assert_eq!(m.get(c), Ok(5));

        let g = m.define(MetricKind::Gauge, "g").unwrap();
        m.increment(g, -4).unwrap();
        assert_eq!(m.by_name("g"), Some(MetricValue::Gauge(-4)));

        let h = m.define(MetricKind::Histogram, "h").unwrap();
        m.record(h, 7).unwrap();
        m.record(h, 9).unwrap();
        assert_eq!(m.by_name("h"), Some(MetricValue::Histogram(vec![7, 9])));
        assert_eq!(m.get(h), Err(MetricError::BadArgument));
        assert_eq!(m.get(99), Err(MetricError::NotFound));
        assert_eq!(m.get(0), Err(MetricError::NotFound));
    }
}
