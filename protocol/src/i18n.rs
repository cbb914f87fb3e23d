//! Languages of the people's screens: English, Spanish and Portuguese, the languages of the
//! programme's member states.
//!
//! Every [`ReasonCode`] has officer-readable text in each [`Lang`] ([`reason_text`]); the
//! English text is the schema's own ([`ReasonCode::text`]), so what central stores and what
//! the screens show never drift apart. Each screen keeps its own small table of UI strings;
//! this module holds only what both sides share.
//!
//! Language tags follow BCP 47 (RFC 5646) loosely: [`Lang::parse`] takes the primary subtag
//! (`pt-BR` → Portuguese) and [`Lang::from_accept_language`] reads an HTTP
//! `Accept-Language` header (RFC 9110 §12.5.4) in order of quality.

use core::fmt;

use crate::schema::ReasonCode;

/// A language a user can choose.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Spanish (español).
    Es,
    /// Portuguese (português).
    Pt,
}

impl Lang {
    /// Every language, in the order the screens offer them.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Es, Lang::Pt];

    /// Parses a language tag: `en`, `es`, `pt`, or a longer tag whose primary subtag is one
    /// of those (`pt-BR`, `es_AR`, `EN-gb`). Returns `None` for any other language.
    #[must_use]
    pub fn parse(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("en") {
            Some(Self::En)
        } else if primary.eq_ignore_ascii_case("es") {
            Some(Self::Es)
        } else if primary.eq_ignore_ascii_case("pt") {
            Some(Self::Pt)
        } else {
            None
        }
    }

    /// The best supported language of an `Accept-Language` header value, or `None` when it
    /// names none of ours. Entries with `q=0` are refused by the client and skipped.
    #[must_use]
    pub fn from_accept_language(header: &str) -> Option<Self> {
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default();
            let mut q: u16 = 1000;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = parse_qvalue(v).unwrap_or(0);
                }
            }
            if q == 0 {
                continue;
            }
            if let Some(lang) = Lang::parse(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    /// The two-letter tag (`en`, `es`, `pt`).
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
            Self::Pt => "pt",
        }
    }

    /// The language's own name, for a language picker.
    #[must_use]
    pub fn native_name(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Es => "Español",
            Self::Pt => "Português",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let v = v.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let scale = [100u16, 10, 1][i];
        thousandths += u16::from(b - b'0') * scale;
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// Officer-readable text of a reason code in a language.
#[must_use]
pub fn reason_text(code: ReasonCode, lang: Lang) -> &'static str {
    use ReasonCode as R;
    match lang {
        Lang::En => code.text(),
        Lang::Es => match code {
            R::AllChecksPassed => {
                "Partes certificadas, precintos intactos y coincidentes, datos actualizados"
            }
            R::SealMismatch => "El número de precinto leído no coincide con el declarado",
            R::SealMissing => "El precinto declarado no se leyó en la puerta",
            R::ESealOpened => "El precinto electrónico indica que ha sido abierto",
            R::ESealTampered => "El precinto electrónico indica manipulación",
            R::ESealLowBattery => "Batería baja en el precinto electrónico",
            R::ContainerMismatch => "El número de contenedor leído no coincide con el declarado",
            R::ContainerReadConflict => "Los lectores no coinciden en el número de contenedor",
            R::ContainerUnread => "No se leyó ningún número de contenedor válido",
            R::RiskHold => "Retención por riesgo u orden de inspección aduanera sobre este envío",
            R::RandomSelection => "Seleccionado para una inspección aleatoria",
            R::NoAdvanceData => "No hay datos anticipados de carga para este contenedor",
            R::PartyMissing => "Falta declarar una parte obligatoria (importador o transportista)",
            R::PartyUnknown => "La parte no figura en el registro OEA",
            R::PartySuspended => "La condición OEA de la parte está suspendida",
            R::PartyRevoked => "La condición OEA de la parte ha sido revocada",
            R::PartyWithdrawn => "La parte se ha retirado de su programa OEA",
            R::PartyExpired => "La autorización OEA de la parte ha vencido",
            R::PartyNoSecurity => {
                "La autorización de la parte no incluye el componente de seguridad (p. ej., solo OEA-C)"
            }
            R::MraNotRecognised => {
                "El programa de la parte no está reconocido por un acuerdo de reconocimiento mutuo vigente"
            }
            R::MraRecognised => "Parte reconocida mediante un acuerdo de reconocimiento mutuo",
            R::ReplicaStale => {
                "Los datos del registro en esta puerta están desactualizados: prioridad suspendida"
            }
            R::AeoPriorityInspection => "Envío OEA: prioridad en la cola de inspección",
            R::UnreadableRead => "Un lector envió datos que no se pudieron interpretar",
            R::OfficerOverride => "Carril cambiado por un oficial",
            R::JournalUnavailable => {
                "No se pueden grabar los registros de la puerta: prioridad suspendida hasta que se pueda"
            }
            R::ReplicaUnreadable => {
                "No se pudieron leer los datos del registro en esta puerta: prioridad suspendida"
            }
            R::AgentRestarted => {
                "El sistema de la puerta se reinició mientras este camión estaba en el carril: prioridad suspendida"
            }
            R::ClockUntrusted => {
                "El reloj de la puerta no es fiable: prioridad suspendida hasta que se corrija"
            }
        },
        Lang::Pt => match code {
            R::AllChecksPassed => {
                "Partes certificadas, lacres intactos e conferidos, dados atualizados"
            }
            R::SealMismatch => "O número do lacre lido não corresponde ao lacre declarado",
            R::SealMissing => "O lacre declarado não foi lido no portão",
            R::ESealOpened => "O lacre eletrônico indica que foi aberto",
            R::ESealTampered => "O lacre eletrônico indica violação",
            R::ESealLowBattery => "Bateria fraca no lacre eletrônico",
            R::ContainerMismatch => {
                "O número do contêiner lido não corresponde ao contêiner declarado"
            }
            R::ContainerReadConflict => "Os leitores divergem quanto ao número do contêiner",
            R::ContainerUnread => "Nenhum número de contêiner válido foi lido",
            R::RiskHold => "Retenção por risco ou ordem de inspeção aduaneira nesta carga",
            R::RandomSelection => "Selecionado para inspeção aleatória",
            R::NoAdvanceData => "Não há dados antecipados de carga para este contêiner",
            R::PartyMissing => {
                "Uma parte obrigatória (importador ou transportador) não foi declarada"
            }
            R::PartyUnknown => "A parte não consta do cadastro OEA",
            R::PartySuspended => "A certificação OEA da parte está suspensa",
            R::PartyRevoked => "A certificação OEA da parte foi revogada",
            R::PartyWithdrawn => "A parte desistiu do seu programa OEA",
            R::PartyExpired => "A certificação OEA da parte expirou",
            R::PartyNoSecurity => {
                "A certificação da parte não inclui o componente de segurança (p. ex., apenas OEA-C)"
            }
            R::MraNotRecognised => {
                "O programa da parte não é reconhecido por um acordo de reconhecimento mútuo em vigor"
            }
            R::MraRecognised => "Parte reconhecida por meio de um acordo de reconhecimento mútuo",
            R::ReplicaStale => {
                "Os dados do cadastro neste portão estão desatualizados: prioridade suspensa"
            }
            R::AeoPriorityInspection => "Carga OEA: prioridade na fila de inspeção",
            R::UnreadableRead => "Um leitor enviou dados que não puderam ser interpretados",
            R::OfficerOverride => "Faixa alterada por um agente",
            R::JournalUnavailable => {
                "Os registros do portão não podem ser gravados: prioridade suspensa até que possam"
            }
            R::ReplicaUnreadable => {
                "Os dados do cadastro neste portão não puderam ser lidos: prioridade suspensa"
            }
            R::AgentRestarted => {
                "O sistema do portão reiniciou enquanto este caminhão estava na faixa: prioridade suspensa"
            }
            R::ClockUntrusted => {
                "O relógio do portão não é confiável: prioridade suspensa até que seja corrigido"
            }
        },
    }
}

/// Words for the keys of a reason's details (as the gate's decider writes them), in
/// English, Spanish and Portuguese; [`detail_label`] looks them up.
const DETAIL_LABELS: &[(&str, [&str; 3])] = &[
    ("container", ["Container", "Contenedor", "Contêiner"]),
    (
        "containers",
        [
            "Containers read",
            "Contenedores leídos",
            "Contêineres lidos",
        ],
    ),
    ("operator", ["Operator", "Operador", "Operador"]),
    ("role", ["Role", "Función", "Função"]),
    ("name", ["Name", "Nombre", "Nome"]),
    ("read", ["Read", "Leído", "Lido"]),
    ("reads", ["Reads", "Lecturas", "Leituras"]),
    ("error", ["Problem", "Problema", "Problema"]),
    ("declared", ["Declared", "Declarado", "Declarado"]),
    (
        "declared_eseal",
        [
            "Declared e-seal",
            "Precinto electrónico declarado",
            "Lacre eletrônico declarado",
        ],
    ),
    (
        "eseal",
        ["E-seal", "Precinto electrónico", "Lacre eletrônico"],
    ),
    ("consignment", ["Consignment", "Envío", "Remessa"]),
    (
        "consignments",
        [
            "Declared consignments",
            "Envíos declarados",
            "Remessas declaradas",
        ],
    ),
    ("what", ["Concerning", "Relativo a", "Referente a"]),
    (
        "mra",
        [
            "Mutual recognition",
            "Reconocimiento mutuo",
            "Reconhecimento mútuo",
        ],
    ),
    (
        "as_of",
        [
            "Registry data as of",
            "Datos del registro a fecha de",
            "Dados do registro de",
        ],
    ),
    ("valid_to", ["Valid until", "Válido hasta", "Válido até"]),
    (
        "status_since",
        ["Status since", "Estado desde", "Situação desde"],
    ),
    ("status", ["AEO status", "Estado OEA", "Situação OEA"]),
    (
        "sequence",
        [
            "Registry sequence",
            "Secuencia del registro",
            "Sequência do registro",
        ],
    ),
    (
        "reference",
        [
            "Hold reference",
            "Referencia de la retención",
            "Referência da retenção",
        ],
    ),
    ("raw", ["As read", "Tal como se leyó", "Tal como lido"]),
    (
        "rate",
        ["Selection rate", "Tasa de selección", "Taxa de seleção"],
    ),
    ("programmes", ["Programmes", "Programas", "Programas"]),
    ("programme", ["Programme", "Programa", "Programa"]),
    (
        "offset_ms",
        [
            "Offset from central (ms)",
            "Desfase respecto a central (ms)",
            "Diferença em relação à central (ms)",
        ],
    ),
    ("measured_at", ["Measured at", "Medido a las", "Medido às"]),
    (
        "max_offset_ms",
        [
            "Allowed offset (ms)",
            "Desfase admitido (ms)",
            "Diferença admitida (ms)",
        ],
    ),
    ("draw", ["Random draw", "Sorteo", "Sorteio"]),
    ("device", ["Device", "Dispositivo", "Dispositivo"]),
    ("clock", ["Clock", "Reloj", "Relógio"]),
    (
        "class",
        ["Shipment class", "Clase de envío", "Classe de remessa"],
    ),
    (
        "bound_s",
        [
            "Allowed age (s)",
            "Antigüedad admitida (s)",
            "Idade admitida (s)",
        ],
    ),
    ("battery_pct", ["Battery (%)", "Batería (%)", "Bateria (%)"]),
    ("age_s", ["Age (s)", "Antigüedad (s)", "Idade (s)"]),
    (
        "authorisations",
        ["Authorisations", "Autorizaciones", "Autorizações"],
    ),
    (
        "kind",
        ["Hold kind", "Tipo de retención", "Tipo de retenção"],
    ),
];

/// A reason detail's key in words in `lang` (`age_s` → "Age (s)"), or `None` for a key
/// without words (screens then show the key as it is).
#[must_use]
pub fn detail_label(key: &str, lang: Lang) -> Option<&'static str> {
    let (_, words) = DETAIL_LABELS.iter().find(|(k, _)| *k == key)?;
    Some(match lang {
        Lang::En => words[0],
        Lang::Es => words[1],
        Lang::Pt => words[2],
    })
}

/// Declares a table of UI strings, each key with its English, Spanish and Portuguese text
/// side by side, so that a key without a translation does not compile. It defines an enum
/// `T` with `T::ALL` (for completeness tests) and `T::get(self, Lang) -> &'static str`.
/// Used by the officer console and the central dashboard for their own words (reason
/// texts are [`reason_text`]).
#[macro_export]
macro_rules! ui_text {
    ($($key:ident => $en:literal, $es:literal, $pt:literal;)*) => {
        /// A UI string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum T { $($key,)* }

        impl T {
            /// Every key (for the completeness test).
            pub const ALL: &'static [T] = &[$(T::$key,)*];

            /// The text in `lang`.
            #[must_use]
            pub fn get(self, lang: $crate::i18n::Lang) -> &'static str {
                match (self, lang) {
                    $((T::$key, $crate::i18n::Lang::En) => $en,
                      (T::$key, $crate::i18n::Lang::Es) => $es,
                      (T::$key, $crate::i18n::Lang::Pt) => $pt,)*
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_text_in_every_language_and_translations_are_not_english() {
        for &code in ReasonCode::ALL {
            let en = reason_text(code, Lang::En);
            assert_eq!(en, code.text(), "{code}: English must be the schema's text");
            for lang in [Lang::Es, Lang::Pt] {
                let t = reason_text(code, lang);
                assert!(!t.trim().is_empty(), "{code} has no {lang} text");
                assert_ne!(t, en, "{code}: {lang} text is the English text");
            }
            assert_ne!(
                reason_text(code, Lang::Es),
                reason_text(code, Lang::Pt),
                "{code}: Spanish and Portuguese texts are identical"
            );
        }
    }

    #[test]
    fn translations_are_distinct_per_code() {
        for lang in Lang::ALL {
            for (i, &a) in ReasonCode::ALL.iter().enumerate() {
                for &b in &ReasonCode::ALL[i + 1..] {
                    assert_ne!(
                        reason_text(a, lang),
                        reason_text(b, lang),
                        "{a} and {b} in {lang}"
                    );
                }
            }
        }
    }

    #[test]
    fn parse_takes_the_primary_subtag() {
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("ES"), Some(Lang::Es));
        assert_eq!(Lang::parse("pt-BR"), Some(Lang::Pt));
        assert_eq!(Lang::parse("es_AR"), Some(Lang::Es));
        assert_eq!(Lang::parse(" pt "), Some(Lang::Pt));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::parse(""), None);
        assert_eq!(Lang::parse("eng"), None);
    }

    #[test]
    fn accept_language_honours_quality() {
        for (header, want) in [
            ("pt-BR,pt;q=0.9,en;q=0.8", Some(Lang::Pt)),
            ("fr-FR, es;q=0.7, en;q=0.5", Some(Lang::Es)),
            ("en;q=0.2, es;q=0.9", Some(Lang::Es)),
            ("es;q=0, en;q=0.1", Some(Lang::En)),
            ("de, fr", None),
            ("es;q=2", None),
        ] {
            assert_eq!(Lang::from_accept_language(header), want, "{header}");
        }
    }

    #[test]
    fn tags_round_trip() {
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.tag()), Some(lang));
        }
    }

    #[test]
    fn detail_labels_are_words_in_every_language_and_unknown_keys_have_none() {
        assert_eq!(detail_label("age_s", Lang::En), Some("Age (s)"));
        assert_eq!(detail_label("age_s", Lang::Es), Some("Antigüedad (s)"));
        assert_eq!(detail_label("no_such_key", Lang::Pt), None);
        for (key, words) in DETAIL_LABELS {
            assert!(
                words.iter().all(|w| !w.trim().is_empty() && w != key),
                "{key}: {words:?}"
            );
            assert_eq!(
                DETAIL_LABELS.iter().filter(|(k, _)| k == key).count(),
                1,
                "{key} twice"
            );
        }
    }
}
