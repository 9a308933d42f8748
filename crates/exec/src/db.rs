//! The engine's read API over the real database.

use tsq_storage::{Db, Matcher, Result, SeriesData};

use crate::Queryable;

impl Queryable for Db {
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Result<Vec<SeriesData>> {
        Db::select(self, matchers, mint_ms, maxt_ms)
    }
}

#[cfg(test)]
mod tests {
    use tsq_storage::{Db, Labels};

    use crate::{Engine, Value};

    #[test]
    fn queries_run_over_the_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut app = db.appender();
        for (job, v) in [("a", 1.0), ("b", 2.0)] {
            let r = app
                .series_ref(&Labels::new([("__name__", "up"), ("job", job)]))
                .unwrap();
            app.add(r, 10_000, v);
        }
        app.commit().unwrap();
        db.flush().unwrap();
        let res = Engine::default()
            .instant_query(&db, "sum(up)", 60_000)
            .unwrap();
        assert!(
            matches!(res.value, Value::Vector(ref v) if v.len() == 1 && v[0].v == 3.0),
            "{:?}",
            res.value
        );
    }
}
