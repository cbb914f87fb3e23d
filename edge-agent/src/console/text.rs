//! The console's own UI strings in English, Spanish and Portuguese. Each string is a
//! variant of [`T`] with its three texts side by side, so a missing translation does not
//! compile. Reason texts come from [`protocol::i18n::reason_text`].

protocol::ui_text! {
    SignIn => "Sign in", "Iniciar sesión", "Entrar";
    SignOut => "Sign out", "Cerrar sesión", "Sair";
    UserName => "User name", "Usuario", "Usuário";
    Password => "Password", "Contraseña", "Senha";
    LoginFailed => "Wrong user name or password.", "Usuario o contraseña incorrectos.", "Usuário ou senha incorretos.";
    TooManyAttempts => "Too many failed attempts; try again in a few minutes.", "Demasiados intentos fallidos; vuelva a intentarlo en unos minutos.", "Muitas tentativas sem sucesso; tente novamente em alguns minutos.";
    OfficerConsole => "Officer console", "Consola del oficial", "Console do agente";
    OperatorView => "Terminal operator view", "Vista del operador de terminal", "Visão do operador do terminal";
    Lane => "Lane", "Carril", "Faixa";
    Lanes => "Lanes", "Carriles", "Faixas";
    History => "History", "Historial", "Histórico";
    ReloadRefused => "Configuration reload refused; the running configuration stays", "Recarga de la configuración rechazada; sigue vigente la configuración en curso", "Recarga da configuração recusada; continua a configuração em uso";
    ReloadApplied => "Configuration reloaded", "Configuración recargada", "Configuração recarregada";
    ConfigKey => "Key", "Clave", "Chave";
    ConfigLine => "line", "línea", "linha";
    PolicyWord => "policy", "política", "política";
    ChangesWord => "changes", "cambios", "alterações";
    TruckInLane => "Truck in lane: reading", "Camión en el carril: leyendo", "Caminhão na faixa: lendo";
    LaneIdle => "No truck in the lane", "Ningún camión en el carril", "Nenhum caminhão na faixa";
    AgentOffline => "Agent offline: lane closed", "Agente fuera de línea: carril cerrado", "Agente fora de linha: faixa fechada";
    LastDecision => "Last decision", "Última decisión", "Última decisão";
    Route => "Route", "Ruta", "Rota";
    Priority => "AEO priority", "Prioridad OEA", "Prioridade OEA";
    Overridden => "Set by an officer", "Fijado por un oficial", "Definido por um agente";
    Reasons => "Reasons", "Motivos", "Motivos";
    Container => "Container", "Contenedor", "Contêiner";
    Containers => "Containers", "Contenedores", "Contêineres";
    Seals => "Seals", "Precintos", "Lacres";
    Declared => "Declared", "Declarado", "Declarado";
    Read => "Read", "Leído", "Lido";
    Source => "Source", "Fuente", "Fonte";
    NotRead => "not read", "no leído", "não lido";
    NotDeclared => "not declared", "no declarado", "não declarado";
    Battery => "battery", "batería", "bateria";
    Vehicle => "Vehicle", "Vehículo", "Veículo";
    Parties => "Parties", "Partes", "Partes";
    Role => "Role", "Función", "Função";
    OperatorId => "Operator id", "Id. del operador", "Id. do operador";
    Programme => "Programme", "Programa", "Programa";
    AeoStatus => "AEO status", "Condición OEA", "Situação OEA";
    Security => "Security component", "Componente de seguridad", "Componente de segurança";
    MraBasis => "MRA basis", "Base ARM", "Base ARM";
    Yes => "yes", "sí", "sim";
    No => "no", "no", "não";
    NotInRegistry => "not in registry", "no registrado", "não cadastrado";
    ReplicaAge => "Registry data age", "Antigüedad de los datos del registro", "Idade dos dados do cadastro";
    NeverLoaded => "never loaded", "nunca cargados", "nunca carregados";
    Actions => "Actions", "Acciones", "Ações";
    Confirm => "Confirm lane", "Confirmar carril", "Confirmar faixa";
    Override => "Override lane", "Cambiar carril", "Alterar faixa";
    OverrideTo => "Send to", "Enviar a", "Enviar para";
    OverrideReason => "Reason", "Motivo", "Motivo";
    ChooseReason => "— choose a reason —", "— elija un motivo —", "— escolha um motivo —";
    Note => "Note", "Nota", "Observação";
    InspectionResult => "Record inspection result", "Registrar resultado de inspección", "Registrar resultado da inspeção";
    Outcome => "Outcome", "Resultado", "Resultado";
    SealIntact => "Seal intact", "Precinto intacto", "Lacre intacto";
    SealReplaced => "Seal replaced (new number)", "Precinto sustituido (número nuevo)", "Lacre substituído (novo número)";
    NewSeal => "New seal number", "Número del precinto nuevo", "Número do novo lacre";
    ContainerOpened => "Container opened", "Contenedor abierto", "Contêiner aberto";
    DiscrepancyConfirmed => "Discrepancy confirmed", "Discrepancia confirmada", "Divergência confirmada";
    FalseRead => "False read (reader wrong)", "Lectura errónea (fallo del lector)", "Leitura falsa (erro do leitor)";
    ManualEntry => "Manual entry (reader down)", "Entrada manual (lector fuera de servicio)", "Entrada manual (leitor inoperante)";
    ManualKind => "What", "Qué", "O quê";
    Seal => "Seal", "Precinto", "Lacre";
    Value => "Number", "Número", "Número";
    Submit => "Record", "Registrar", "Registrar";
    Saved => "Recorded.", "Registrado.", "Registrado.";
    Degraded => "Lane degraded", "Carril degradado", "Faixa degradada";
    DeviceDown => "Device down", "Equipo fuera de servicio", "Equipamento inoperante";
    ReplicaStale => "Registry data out of date: no FAST lane possible", "Datos del registro desactualizados: no es posible el carril RÁPIDO", "Dados do cadastro desatualizados: faixa RÁPIDA indisponível";
    CentralDown => "Central unreachable; events waiting", "Central inaccesible; eventos en espera", "Central inacessível; eventos aguardando";
    ClockAhead => "Clock untrusted: this gate is ahead of central by", "Reloj no fiable: esta puerta va adelantada respecto a central en", "Relógio não confiável: este portão está adiantado em relação à central em";
    ClockBehind => "Clock untrusted: this gate is behind central by", "Reloj no fiable: esta puerta va atrasada respecto a central en", "Relógio não confiável: este portão está atrasado em relação à central em";
    ClockBound => "allowed", "permitido", "permitido";
    ClockNoFast => "no FAST lane until the clock is corrected (check NTP/chrony)", "no hay carril RÁPIDO hasta que se corrija el reloj (revise NTP/chrony)", "faixa RÁPIDA indisponível até que o relógio seja corrigido (verifique NTP/chrony)";
    SearchContainer => "Container number", "Número de contenedor", "Número do contêiner";
    Search => "Search", "Buscar", "Buscar";
    Time => "Time", "Hora", "Hora";
    Decision => "Decision", "Decisión", "Decisão";
    NoTransactions => "No transactions.", "No hay transacciones.", "Nenhuma transação.";
    Transaction => "Transaction", "Transacción", "Transação";
    NoSuchTransaction => "Transaction not found in this gate's journal", "Transacción no encontrada en el diario de esta puerta", "Transação não encontrada no diário deste portão";
    OfficerActions => "Officer actions", "Acciones de oficiales", "Ações dos agentes";
    Opened => "Opened", "Abierta", "Aberta";
    Closed => "Closed", "Cerrada", "Fechada";
    FastShare => "FAST share, last hour", "Proporción RÁPIDO, última hora", "Participação RÁPIDA, última hora";
    QueueCounts => "Trucks per route, last hour", "Camiones por ruta, última hora", "Caminhões por rota, última hora";
    State => "State", "Estado", "Estado";
    Ok => "Working", "Operativo", "Operando";
    LiveOff => "Live updates interrupted; reconnecting…", "Actualización en vivo interrumpida; reconectando…", "Atualização ao vivo interrompida; reconectando…";
    Fast => "FAST", "RÁPIDO", "RÁPIDA";
    Standard => "STANDARD", "NORMAL", "NORMAL";
    Inspect => "INSPECT", "INSPECCIÓN", "INSPEÇÃO";
    ContactPoint => "Customs contact point", "Punto de contacto aduanero", "Ponto de contato aduaneiro";
    Phone => "Phone", "Teléfono", "Telefone";
    Email => "E-mail", "Correo electrónico", "E-mail";
    Shortcuts => "Keys: 1–9 lane · C confirm · O override · I inspection result · M manual entry · L close or reopen lane · H history · Esc close", "Teclas: 1–9 carril · C confirmar · O cambiar carril · I resultado de inspección · M entrada manual · L cerrar o reabrir carril · H historial · Esc cerrar", "Teclas: 1–9 faixa · C confirmar · O alterar faixa · I resultado da inspeção · M entrada manual · L fechar ou reabrir faixa · H histórico · Esc fechar";
    LaneClosed => "LANE CLOSED", "CARRIL CERRADO", "FAIXA FECHADA";
    ClosedBy => "Closed by", "Cerrado por", "Fechada por";
    ClosedSince => "since", "desde", "desde";
    LaneControl => "Close or reopen the lane", "Cerrar o reabrir el carril", "Fechar ou reabrir a faixa";
    LaneControlReason => "Reason (required)", "Motivo (obligatorio)", "Motivo (obrigatório)";
    CloseLane => "Close lane", "Cerrar carril", "Fechar faixa";
    ReopenLane => "Reopen lane", "Reabrir carril", "Reabrir faixa";
    Refusals => "Trucks turned away while closed", "Camiones rechazados mientras estaba cerrado", "Caminhões recusados enquanto fechada";
    RRisk => "Officer judgement: risk indicators", "Criterio del oficial: indicadores de riesgo", "Critério do agente: indicadores de risco";
    RDocs => "Documents do not match the cargo", "Los documentos no coinciden con la carga", "Documentos não correspondem à carga";
    RDriver => "Driver or vehicle behaviour", "Conducta del conductor o del vehículo", "Comportamento do motorista ou do veículo";
    RReader => "Reader fault confirmed", "Fallo del lector confirmado", "Falha do leitor confirmada";
    RSupervisor => "Supervisor instruction", "Instrucción del supervisor", "Instrução do supervisor";
    ROther => "Other (explain in the note)", "Otro (explique en la nota)", "Outro (explique na observação)";
}

/// Officer override reasons offered in the list: stable code and its text key.
pub const OVERRIDE_REASONS: &[(&str, T)] = &[
    ("RISK_INDICATORS", T::RRisk),
    ("DOCUMENT_DISCREPANCY", T::RDocs),
    ("DRIVER_BEHAVIOUR", T::RDriver),
    ("READER_FAULT", T::RReader),
    ("SUPERVISOR_INSTRUCTION", T::RSupervisor),
    ("OTHER", T::ROther),
];

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::i18n::Lang;

    #[test]
    fn every_string_is_present_in_every_language() {
        for &t in T::ALL {
            for lang in Lang::ALL {
                assert!(!t.get(lang).trim().is_empty(), "{t:?} empty in {lang}");
            }
        }
        // Most strings differ from English; a few are the same word in all three.
        let same = T::ALL
            .iter()
            .filter(|t| t.get(Lang::Es) == t.get(Lang::En) || t.get(Lang::Pt) == t.get(Lang::En))
            .count();
        assert!(same * 10 < T::ALL.len(), "{same} strings are untranslated");
    }

    /// Every detail key the decider and the pipeline write is shown in words.
    #[test]
    fn every_reason_detail_key_has_words() {
        let mut keys = Vec::new();
        for src in [
            include_str!("../decider.rs"),
            include_str!("../pipeline.rs"),
        ] {
            for part in src.split(".with(").skip(1) {
                let part = part.trim_start();
                if let Some(rest) = part.strip_prefix('"')
                    && let Some(end) = rest.find('"')
                {
                    keys.push(&rest[..end]);
                }
            }
        }
        assert!(keys.len() > 30, "keys found: {keys:?}");
        for k in keys {
            let words = protocol::i18n::detail_label(k, Lang::En)
                .unwrap_or_else(|| panic!("no words for the detail key {k:?}"));
            assert_ne!(words, k, "{k}: the words are the key");
        }
    }
}
