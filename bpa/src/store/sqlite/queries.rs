//! The store's listings and checks: bundles by state, neighbour, destination or expiry, a page
//! at a time; integrity checks; ownership and registrations.

use super::*;

impl SqliteStore {
    /// The bundle's encoded bytes, whole in memory (for small bundles and tests).
    pub async fn read(&self, id: StoreId) -> Result<Bytes, StoreError> {
        self.open_data(id).await?.into_bytes().await
    }

    async fn query(
        &self,
        sql: String,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        let rows = self
            .inner
            .read(move |c| {
                let mut statement = c.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(params.iter()), read_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        collect(rows)
    }

    /// Bundles in a state of this kind (and, if given, naming this neighbour or endpoint),
    /// oldest first, with store ids after `after` (0: from the first): a page at a time.
    pub async fn by_state(
        &self,
        kind: StateKind,
        argument: Option<&str>,
        after: StoreId,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        let mut params = vec![Value::Integer(kind as i64), Value::Integer(after)];
        // Both index columns constrained, so a page is a range of the index (state, state_arg,
        // id) from the cursor on; with `state` alone SQLite would sort every row in the state
        // for each page. (A state that takes an argument, listed without one, is sorted so;
        // those are the small ones: in flight, queued, awaiting reassembly.)
        let filter = match argument {
            Some(arg) => {
                params.push(Value::Text(arg.to_string()));
                " AND state_arg = ?3"
            }
            None if kind == StateKind::WaitingForRoute => " AND state_arg IS NULL",
            None => "",
        };
        params.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
        let limit_at = params.len();
        self.query(
            format!(
                "SELECT {ROW_COLUMNS} FROM bundles WHERE state = ?1 AND id > ?2{filter} ORDER BY id LIMIT ?{limit_at}"
            ),
            params,
        )
        .await
    }

    /// Bundles queued for, being sent to, or in custody with this neighbour.
    pub async fn by_neighbour(&self, neighbour: &str, limit: usize) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE state IN (1, 2, 3) AND state_arg = ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Text(neighbour.to_string()), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// Bundles for this destination EID.
    pub async fn by_destination(
        &self,
        destination: &Eid,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE destination = ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Text(destination.to_string()), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// The bundles that expire first, after the cursor `(expires_at, store id)` if given (a
    /// caller pages through them, whatever it could or could not do with the earlier ones).
    pub async fn next_expiring(
        &self,
        after: Option<(u64, StoreId)>,
        limit: usize,
    ) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        // Without a cursor, from the start: (-1, -1) sorts before every row.
        let (expires, id) = after.map_or((-1, -1), |(expires, id)| (expires.min(i64::MAX as u64) as i64, id));
        self.query(
            format!(
                "SELECT {ROW_COLUMNS} FROM bundles WHERE (expires_at, id) > (?1, ?2) ORDER BY expires_at, id LIMIT ?3"
            ),
            vec![Value::Integer(expires), Value::Integer(id), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// Every bundle, in insertion order, a page at a time.
    pub async fn list(&self, after: StoreId, limit: usize) -> Result<Vec<StoredBundle>, StoreError> {
        use rusqlite::types::Value;
        self.query(
            format!("SELECT {ROW_COLUMNS} FROM bundles WHERE id > ?1 ORDER BY id LIMIT ?2"),
            vec![Value::Integer(after), Value::Integer(limit.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    /// SQLite's own consistency check of the database file (`PRAGMA integrity_check`): an
    /// empty list when it is sound, else what SQLite found.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let lines = self
            .inner
            .read(|c| {
                let mut statement = c.prepare("PRAGMA integrity_check")?;
                let lines =
                    statement.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                Ok(lines)
            })
            .await?;
        Ok(if lines == ["ok"] { Vec::new() } else { lines })
    }

    /// Reads a stored bundle through and checks it against the checksum recorded at insert and
    /// RFC 9171 §4 (lenient, as stored): `Ok(None)` when it is sound, `Ok(Some(problem))`
    /// naming what is wrong. Large bundles are streamed, not loaded. Changes nothing.
    pub async fn verify(&self, id: StoreId) -> Result<Option<String>, StoreError> {
        use tokio::io::AsyncReadExt;
        let options = &self.inner.config.parse;
        let (mut file, path, integrity) = match self.open_checked(id, false).await {
            Ok(BundleData::Inline(bytes)) => {
                return Ok(crate::bundle::Bundle::parse(&bytes, options).err().map(|e| e.to_string()));
            }
            Ok(BundleData::File { file, path, integrity, .. }) => (file, path, integrity),
            Err(StoreError::Damaged { problem, .. }) => return Ok(Some(problem)),
            Err(error) => return Err(error),
        };
        let read_error = |source| StoreError::Io { action: "reading", path: path.clone(), source };
        let (header, prefix) =
            match crate::store::data::read_header(&mut file, options).await.map_err(read_error)? {
                Ok(found) => found,
                Err(error) => return Ok(Some(error.to_string())),
            };
        // The bundle's own checks over the payload, and the recorded checksum over it all.
        let mut check = crate::bundle::PayloadCheck::new(&header, &prefix);
        check.update(&prefix[header.payload.data_offset..]);
        let mut whole = crate::store::integrity::extend(0, &prefix);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut chunk).await.map_err(read_error)?;
            if n == 0 {
                break;
            }
            check.update(&chunk[..n]);
            whole = crate::store::integrity::extend(whole, &chunk[..n]);
        }
        let name = path.display().to_string();
        let own = check.finish().err();
        Ok(match (integrity.verdict(whole, &name), own) {
            (Ok(()), own) => own.map(|e| e.to_string()),
            (Err(damage), None) => Some(damage.to_string()),
            (Err(damage), Some(own)) => Some(format!("{damage}; the bundle's own check: {own}")),
        })
    }

    /// Whom the store belongs to, checked against `node_id` (a node ID's text): a new store is
    /// claimed for it; one that belongs to another node is left as it is and that node named
    /// ([`Ownership::Other`]) unless `adopt`, which makes it `node_id`'s from now on.
    pub async fn claim(&self, node_id: &str, adopt: bool) -> Result<Ownership, StoreError> {
        let owner: Option<String> = self
            .inner
            .read(|c| {
                // A read-only store of an older version has no such table: nobody owns it yet.
                match c.prepare_cached("SELECT node_id FROM owner LIMIT 1") {
                    Ok(mut statement) => statement.query_row([], |r| r.get(0)).optional(),
                    Err(_) => Ok(None),
                }
            })
            .await?;
        let outcome = match owner {
            Some(owner) if owner == node_id => return Ok(Ownership::Same),
            Some(owner) if !adopt => return Ok(Ownership::Other { owner }),
            Some(previous) => Ownership::Adopted { previous },
            None => Ownership::First,
        };
        let node_id = node_id.to_string();
        self.inner.submit(|reply| WriteOp::SetOwner { node_id, reply }).await?;
        Ok(outcome)
    }

    /// Records (`registered`) or forgets a local application endpoint; durable on return.
    pub async fn set_registration(&self, endpoint: &Eid, registered: bool) -> Result<(), StoreError> {
        let endpoint = endpoint.to_string();
        let at = self.inner.clock.now_dtn_ms();
        self.inner.submit(|reply| WriteOp::Registration { endpoint, registered, at, reply }).await
    }

    /// The registered local application endpoints, in registration order.
    pub async fn registrations(&self) -> Result<Vec<Eid>, StoreError> {
        let texts = self
            .inner
            .read(|c| {
                let mut statement = c.prepare_cached("SELECT endpoint FROM registrations ORDER BY rowid")?;
                let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        texts
            .into_iter()
            .map(|text| {
                text.parse::<Eid>()
                    .map_err(|e| StoreError::CorruptRegistration { problem: e.to_string(), endpoint: text })
            })
            .collect()
    }
}
