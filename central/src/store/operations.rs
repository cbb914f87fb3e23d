//! The [`Store`](super::Store) operations both backends carry out alike: one
//! transaction handed to the function of the same name in the operation's family
//! (`event_tables::add_agent`, `query::events`, …). A backend has families of these
//! names and runs a transaction with `self.read(f)` (read only) or `self.write(f)`; `t`
//! is what its family functions take (redb: the database, each function beginning its
//! own transaction; PostgreSQL: the transaction).

/// The [`Store`](super::Store) methods that run their family's function, for an
/// `impl Store` block.
macro_rules! family_operations {
    () => {
        fn add_agent(&self, token: &TokenHash, agent: &AgentRecord) -> Result<(), StoreError> {
            self.write(|t| event_tables::add_agent(t, token, agent))
        }

        fn agent_for_token(&self, token: &TokenHash) -> Result<Option<AgentRecord>, StoreError> {
            self.read(|t| event_tables::agent_for_token(t, token))
        }

        fn agent_tokens(&self, gate: &GateId) -> Result<Vec<AgentRecord>, StoreError> {
            self.read(|t| event_tables::agent_tokens(t, gate))
        }

        fn gates(&self) -> Result<Vec<GateRow>, StoreError> {
            self.read(|t| query::gates(t))
        }

        fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
            self.read(|t| query::events(t, q))
        }

        fn transaction_events(
            &self,
            gate: &GateId,
            txn: &Uuid,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.read(|t| query::transaction_events(t, gate, txn))
        }

        fn hourly_stats(
            &self,
            gate: Option<&GateId>,
            from: Timestamp,
            to: Timestamp,
        ) -> Result<Vec<HourStats>, StoreError> {
            self.read(|t| query::hourly_stats(t, gate, from, to))
        }

        fn programme_counts(
            &self,
            from: Option<Timestamp>,
            to: Timestamp,
        ) -> Result<crate::rollup::ProgrammeCounts, StoreError> {
            self.read(|t| rollup_tables::programme_counts(t, from, to))
        }

        fn summary(&self) -> Result<Summary, StoreError> {
            self.read(|t| query::summary(t))
        }

        fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
            self.read(|t| query::alerts(t, limit))
        }

        fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError> {
            self.read(|t| query::alert(t, id))
        }

        fn last_seq(&self) -> Result<u64, StoreError> {
            self.read(|t| registry_tables::last_seq(t))
        }

        fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
            self.read(|t| registry_tables::changes_after(t, after, limit))
        }

        fn snapshot_each(
            &self,
            port: &str,
            now: Timestamp,
            visit: &mut SnapshotVisit<'_>,
        ) -> Result<SnapshotHead, StoreError> {
            self.read(|t| registry_tables::snapshot_each(t, port, now, visit))
        }

        fn operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
            self.read(|t| registry_tables::operator(t, id))
        }

        fn consignments_for_container(
            &self,
            container: &str,
        ) -> Result<Vec<Consignment>, StoreError> {
            self.read(|t| registry_tables::consignments_for_container(t, container))
        }

        fn cases(&self, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
            self.read(|t| case_tables::cases(t, q))
        }

        fn case(&self, id: u64) -> Result<Option<Case>, StoreError> {
            self.read(|t| case_tables::case(t, id))
        }

        fn audit(&self, note: AuditNote<'_>) -> Result<(), StoreError> {
            self.write(|t| staff_tables::audit(t, note))
        }

        fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
            self.read(|t| staff_tables::audit_log(t, after, limit))
        }

        fn add_user(&self, user: &StaffUser) -> Result<(), StoreError> {
            self.write(|t| staff_tables::add_user(t, user))
        }

        fn user(&self, name: &str) -> Result<Option<StaffUser>, StoreError> {
            self.read(|t| staff_tables::user(t, name))
        }

        fn put_session(&self, token: &TokenHash, s: &Session) -> Result<(), StoreError> {
            self.write(|t| staff_tables::put_session(t, token, s))
        }

        fn session(&self, token: &TokenHash) -> Result<Option<Session>, StoreError> {
            self.read(|t| staff_tables::session(t, token))
        }

        fn delete_session(&self, token: &TokenHash) -> Result<(), StoreError> {
            self.write(|t| staff_tables::delete_session(t, token))
        }

        fn users(&self) -> Result<Vec<StaffUser>, StoreError> {
            self.read(|t| staff_tables::users(t))
        }

        fn update_user(
            &self,
            name: &str,
            by: Stamp<'_>,
            change: &mut Edit<'_, StaffUser>,
        ) -> Result<StaffUser, StoreError> {
            self.write(|t| staff_tables::update_user(t, name, by, change))
        }

        fn set_user_lang(&self, name: &str, lang: Lang, at: Timestamp) -> Result<(), StoreError> {
            self.write(|t| staff_tables::set_user_lang(t, name, lang, at))
        }

        fn search_operators(
            &self,
            text: &str,
            limit: usize,
        ) -> Result<Vec<RegistryRecord>, StoreError> {
            self.read(|t| registry_tables::search_operators(t, text, limit))
        }

        fn operator_changes(
            &self,
            id: &OperatorId,
            limit: usize,
        ) -> Result<Vec<LoggedChange>, StoreError> {
            self.read(|t| registry_tables::operator_changes(t, id, limit))
        }

        fn add_company(
            &self,
            company: &Company,
            user: Option<&StaffUser>,
            by: Stamp<'_>,
        ) -> Result<(), StoreError> {
            self.write(|t| company_tables::add_company(t, company, user, by))
        }

        fn company(&self, operator: &str) -> Result<Option<Company>, StoreError> {
            self.read(|t| company_tables::company(t, operator))
        }

        fn companies(&self) -> Result<Vec<Company>, StoreError> {
            self.read(|t| company_tables::companies(t))
        }

        fn update_company(
            &self,
            operator: &str,
            by: Stamp<'_>,
            change: &mut Edit<'_, Company>,
        ) -> Result<Company, StoreError> {
            self.write(|t| company_tables::update_company(t, operator, by, change))
        }

        fn put_document(&self, sha256: &str, body: &[u8]) -> Result<(), StoreError> {
            self.write(|t| company_tables::put_document(t, sha256, body))
        }

        fn document(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.read(|t| company_tables::document(t, sha256))
        }
    };
}
