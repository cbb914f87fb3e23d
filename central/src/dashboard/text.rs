//! The dashboard's own UI strings in English, Spanish and Portuguese.
//!
//! Reason texts are shared with the officer console and come from [`protocol::i18n`];
//! this table holds only the words of central's pages. Each key carries all three texts
//! in one line, so a key without a translation does not compile.

protocol::ui_text! {
    AppName => "AEO gate central", "Central de puertas OEA", "Central de portões OEA";
    Exceptions => "Exceptions", "Excepciones", "Exceções";
    Gates => "Gate health", "Estado de puertas", "Estado dos portões";
    ClosedLanes => "Closed lanes", "Carriles cerrados", "Faixas fechadas";
    LaneClosedMark => "CLOSED", "CERRADO", "FECHADA";
    Charts => "Charts", "Gráficos", "Gráficos";
    Programme => "Programme", "Programa", "Programa";
    Registry => "Registry", "Registro", "Registro";
    LogOut => "Log out", "Cerrar sesión", "Sair";
    LogIn => "Log in", "Iniciar sesión", "Entrar";
    User => "User", "Usuario", "Usuário";
    Password => "Password", "Contraseña", "Senha";
    WrongLogin => "Wrong user name or password.", "Usuario o contraseña incorrectos.", "Usuário ou senha incorretos.";
    Throttled => "Too many failed attempts. Try again in", "Demasiados intentos fallidos. Inténtelo de nuevo en", "Tentativas falhadas demais. Tente novamente em";
    Seconds => "seconds", "segundos", "segundos";
    Language => "Language", "Idioma", "Idioma";
    Save => "Save", "Guardar", "Salvar";
    Filter => "Filter", "Filtrar", "Filtrar";
    Any => "any", "cualquiera", "qualquer";
    Port => "Port", "Puerto", "Porto";
    Gate => "Gate", "Puerta", "Portão";
    Lane => "Lane", "Carril", "Faixa";
    Reason => "Reason", "Motivo", "Motivo";
    State => "State", "Estado", "Estado";
    Since => "Since", "Desde", "Desde";
    LastHour => "last hour", "última hora", "última hora";
    Last6h => "last 6 hours", "últimas 6 horas", "últimas 6 horas";
    Last24h => "last 24 hours", "últimas 24 horas", "últimas 24 horas";
    Last3d => "last 3 days", "últimos 3 días", "últimos 3 dias";
    Last7d => "last 7 days", "últimos 7 días", "últimos 7 dias";
    AllTime => "all time", "todo", "tudo";
    StateOpen => "Open", "Abierto", "Aberto";
    StateAcknowledged => "Acknowledged", "Reconocido", "Reconhecido";
    StateResolved => "Resolved", "Resuelto", "Resolvido";
    Case => "Case", "Caso", "Caso";
    Opened => "Opened", "Abierto el", "Aberto em";
    Subject => "Subject", "Asunto", "Assunto";
    Assignee => "Assignee", "Asignado a", "Atribuído a";
    NoCases => "No cases match.", "Ningún caso coincide.", "Nenhum caso corresponde.";
    Live => "Live: new exceptions appear here without reloading.", "En vivo: las nuevas excepciones aparecen aquí sin recargar.", "Ao vivo: novas exceções aparecem aqui sem recarregar.";
    Older => "Older cases", "Casos anteriores", "Casos anteriores";
    IntegrityAlert => "Integrity alert", "Alerta de integridad", "Alerta de integridade";
    Decision => "Decision", "Decisión", "Decisão";
    Reasons => "Reasons", "Motivos", "Motivos";
    Route => "Route", "Ruta", "Rota";
    Transaction => "Gate transaction", "Transacción de puerta", "Transação de portão";
    Closed => "Closed", "Cerrada", "Fechada";
    TimeAtGate => "Time at gate", "Tiempo en puerta", "Tempo no portão";
    Reads => "Reads", "Lecturas", "Leituras";
    Source => "Source", "Fuente", "Fonte";
    Device => "Device", "Dispositivo", "Dispositivo";
    Value => "Value", "Valor", "Valor";
    Raw => "Raw", "Bruto", "Bruto";
    Count => "Count", "Veces", "Vezes";
    EnteredBy => "Entered by", "Ingresado por", "Inserido por";
    Declared => "Declared (advance cargo data)", "Declarado (datos anticipados de carga)", "Declarado (dados antecipados de carga)";
    Consignment => "Consignment", "Envío", "Remessa";
    Container => "Container", "Contenedor", "Contêiner";
    Seals => "Seals", "Precintos", "Lacres";
    ESeals => "E-seals", "Precintos electrónicos", "Lacres eletrônicos";
    Parties => "Parties", "Partes", "Partes";
    Role => "Role", "Función", "Função";
    Operator => "Operator", "Operador", "Operador";
    Name => "Name", "Nombre", "Nome";
    Status => "Status", "Estado", "Situação";
    Security => "Security", "Seguridad", "Segurança";
    Mra => "MRA", "ARM", "ARM";
    Holds => "Holds", "Retenciones", "Retenções";
    Replica => "Registry replica", "Réplica del registro", "Réplica do registro";
    Age => "age", "antigüedad", "idade";
    OfficerResults => "Officer's inspection result", "Resultado de inspección del oficial", "Resultado da inspeção do oficial";
    NoOfficerResult => "No inspection result recorded at the gate yet.", "Aún no se registró resultado de inspección en la puerta.", "Nenhum resultado de inspeção registrado no portão ainda.";
    Overrides => "Lane overrides at the gate", "Cambios de carril en la puerta", "Alterações de faixa no portão";
    OverrideTo => "lane set to", "carril cambiado a", "faixa alterada para";
    History => "Case history", "Historial del caso", "Histórico do caso";
    When => "When", "Cuándo", "Quando";
    Who => "Who", "Quién", "Quem";
    What => "What", "Qué", "O quê";
    Acknowledge => "Acknowledge", "Reconocer", "Reconhecer";
    Assign => "Assign", "Asignar", "Atribuir";
    Resolve => "Resolve", "Resolver", "Resolver";
    Outcome => "Outcome", "Resultado", "Resultado";
    Note => "Note", "Nota", "Nota";
    NewSeal => "New seal number", "Nuevo número de precinto", "Novo número do lacre";
    OutcomeIntact => "Seal verified intact", "Precinto verificado intacto", "Lacre verificado intacto";
    OutcomeReplaced => "Seal replaced", "Precinto reemplazado", "Lacre substituído";
    OutcomeDiscrepancy => "Discrepancy confirmed", "Discrepancia confirmada", "Discrepância confirmada";
    OutcomeFalseRead => "False read", "Lectura falsa", "Leitura falsa";
    CaseResolved => "This case is resolved.", "Este caso está resuelto.", "Este caso está resolvido.";
    Alert => "Alert", "Alerta", "Alerta";
    Stale => "STALE", "SIN CONTACTO", "SEM CONTATO";
    Revoked => "REVOKED", "REVOCADA", "REVOGADA";
    Users => "Users", "Usuarios", "Usuários";
    AccountActive => "active", "activa", "ativa";
    AccountDisabled => "disabled", "desactivada", "desativada";
    UsersAdminOnly => "Only an admin may manage users.", "Solo un administrador puede gestionar usuarios.", "Apenas um administrador pode gerenciar usuários.";
    NotOwnAccount => "You cannot disable your own account or change its role.", "No puede desactivar su propia cuenta ni cambiar su función.", "Você não pode desativar a própria conta nem alterar sua função.";
    TokenRevokedAt => "Token revoked", "Credencial revocada", "Credencial revogada";
    Degraded => "DEGRADED", "DEGRADADA", "DEGRADADO";
    Healthy => "OK", "OK", "OK";
    LastHeartbeat => "Last heartbeat", "Último latido", "Último sinal";
    LastConfigChange => "Configuration reloaded", "Configuración recargada", "Configuração recarregada";
    PolicyWord => "policy", "política", "política";
    AtWord => "at", "a las", "às";
    ChangesWord => "changes", "cambios", "alterações";
    Never => "never", "nunca", "nunca";
    Ago => "ago", "atrás", "atrás";
    ReplicaSeq => "Replica sequence", "Secuencia de réplica", "Sequência da réplica";
    Backlog => "Backlog", "Pendientes", "Pendentes";
    DeviceFaults => "Device faults", "Fallas de dispositivos", "Falhas de dispositivos";
    None => "none", "ninguna", "nenhuma";
    ClockOffset => "Clock offset", "Desfase de reloj", "Desvio do relógio";
    GateAhead => "gate ahead by", "puerta adelantada", "portão adiantado";
    GateBehind => "gate behind by", "puerta atrasada", "portão atrasado";
    ClockUntrusted => "UNTRUSTED: no FAST at this gate", "NO FIABLE: sin carril RÁPIDO en esta puerta", "NÃO CONFIÁVEL: sem faixa RÁPIDA neste portão";
    ClockWithinBound => "within bound", "dentro del límite", "dentro do limite";
    ClockEstimated => "estimated from the heartbeat's arrival", "estimado por la llegada del latido", "estimado pela chegada do sinal";
    Acked => "Acknowledged through", "Confirmado hasta", "Confirmado até";
    EventsStored => "Events stored", "Eventos almacenados", "Eventos armazenados";
    NoGates => "No gate has registered yet.", "Ninguna puerta se ha registrado aún.", "Nenhum portão se registrou ainda.";
    Range => "Range", "Período", "Período";
    Show => "Show", "Mostrar", "Mostrar";
    DecisionsPerHour => "Decisions per hour", "Decisiones por hora", "Decisões por hora";
    ExceptionRate => "Exception rate", "Tasa de excepciones", "Taxa de exceções";
    FastShare => "FAST share", "Proporción FAST", "Proporção FAST";
    NoData => "No decisions in this range.", "No hay decisiones en este período.", "Nenhuma decisão neste período.";
    AllGates => "all gates", "todas las puertas", "todos os portões";
    Benefits => "Benefits of AEO certification", "Beneficios de la certificación OEA", "Benefícios da certificação OEA";
    BenefitsIntro => "Traffic whose declared parties are all certified and active (AEO) against the rest, over the selected range.", "Tráfico cuyas partes declaradas están todas certificadas y activas (OEA) frente al resto, en el período elegido.", "Tráfego cujas partes declaradas estão todas certificadas e ativas (OEA) em comparação com o restante, no período escolhido.";
    Group => "Group", "Grupo", "Grupo";
    Transactions => "Transactions", "Transacciones", "Transações";
    InspectionRate => "Inspection rate", "Tasa de inspección", "Taxa de inspeção";
    MedianTime => "Median time at gate", "Tiempo mediano en puerta", "Tempo mediano no portão";
    AeoTraffic => "AEO", "OEA", "OEA";
    NonAeoTraffic => "non-AEO", "no OEA", "não OEA";
    PerProgramme => "Per programme", "Por programa", "Por programa";
    PerOperator => "Per operator", "Por operador", "Por operador";
    DownloadCsv => "Download CSV", "Descargar CSV", "Baixar CSV";
    Search => "Search", "Buscar", "Buscar";
    SearchHint => "Operator id or name", "Id o nombre del operador", "Id ou nome do operador";
    NoOperators => "No operator matches.", "Ningún operador coincide.", "Nenhum operador corresponde.";
    Authorisations => "Authorisations", "Autorizaciones", "Autorizações";
    ValidFrom => "Valid from", "Válido desde", "Válido desde";
    ValidTo => "Valid to", "Válido hasta", "Válido até";
    StatusHistory => "Status history", "Historial de estado", "Histórico de situação";
    Seq => "Seq", "Sec.", "Seq.";
    Change => "Change", "Cambio", "Alteração";
    AppliedAt => "Applied at gates", "Aplicado en puertas", "Aplicado nos portões";
    GateApplied => "applied", "aplicado", "aplicado";
    GatePending => "not yet applied", "aún no aplicado", "ainda não aplicado";
    ChangeStatus => "Change status", "Cambiar estado", "Alterar situação";
    Suspend => "Suspend", "Suspender", "Suspender";
    Reinstate => "Reinstate", "Restablecer", "Restabelecer";
    Revoke => "Revoke", "Revocar", "Revogar";
    AdminOnly => "Only an admin may change an operator's status.", "Solo un administrador puede cambiar el estado de un operador.", "Apenas um administrador pode alterar a situação de um operador.";
    ReasonRequired => "A reason is required.", "Se requiere un motivo.", "Um motivo é obrigatório.";
    Forbidden => "Your role may not do this.", "Su función no permite esta acción.", "Sua função não permite esta ação.";
    NotFound => "Not found.", "No encontrado.", "Não encontrado.";
    Imported => "Imported", "Importado", "Importado";
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::i18n::Lang;

    /// Every key has text in every language, and most differ from English (translated,
    /// not copied).
    fn assert_translated<K: Copy + std::fmt::Debug>(all: &[K], get: fn(K, Lang) -> &'static str) {
        for &key in all {
            for lang in Lang::ALL {
                assert!(
                    !get(key, lang).trim().is_empty(),
                    "{key:?} has no {lang:?} text"
                );
            }
        }
        for lang in [Lang::Es, Lang::Pt] {
            let same = all
                .iter()
                .filter(|&&k| get(k, lang) == get(k, Lang::En))
                .count();
            assert!(
                same * 10 < all.len(),
                "{lang:?}: {same} keys left in English"
            );
        }
    }

    #[test]
    fn every_ui_string_has_text_in_every_language() {
        assert_translated(T::ALL, T::get);
    }

    #[test]
    fn every_portal_string_has_text_in_every_language() {
        use super::super::portal_text::T as P;
        assert_translated(P::ALL, P::get);
    }
}
