//! The programme's starter set of minimum security requirements.
//!
//! Written for this programme in its own words from two public sources, which each
//! requirement cites by document and section title: the WCO SAFE Framework of Standards
//! (2021 edition), Annex 4 "AEO conditions, requirements and benefits", and U.S. CBP's
//! CTPAT Minimum Security Criteria (2019/2020 revision, the criteria categories shared by
//! every business entity type). A programme replaces or extends this set; the portal reads
//! requirements as data ([`Requirement`]), never by matching their text.
//!
//! Each requirement carries its title and explanation in Spanish and Portuguese as well;
//! the source and section are cited as their documents name them.

use super::{Category, Level, Localised, Requirement};

const SAFE: &str = "WCO SAFE Framework of Standards (2021), Annex 4";
const CTPAT: &str = "CBP CTPAT Minimum Security Criteria (2020)";

/// Every requirement of the starter set, in the order the self-assessment shows them.
pub const STARTER: &[Requirement] = &[
    Requirement {
        id: "BP-1",
        category: Category::BusinessPartner,
        level: Level::Must,
        title: "Business partners are screened before and during the relationship",
        explanation: "Keep a written procedure to check new and existing partners (carriers, brokers, suppliers) for security risk, and record the result and the date of each check.",
        source: SAFE,
        es: Localised {
            title: "Los socios comerciales se evalúan antes y durante la relación",
            explanation: "Mantenga un procedimiento escrito para evaluar el riesgo de seguridad de socios nuevos y existentes (transportistas, agentes, proveedores) y registre el resultado y la fecha de cada evaluación.",
        },
        pt: Localised {
            title: "Os parceiros comerciais são avaliados antes e durante a relação",
            explanation: "Mantenha um procedimento escrito para avaliar o risco de segurança de parceiros novos e existentes (transportadores, despachantes, fornecedores) e registre o resultado e a data de cada avaliação.",
        },
        section: "Trading partner security; CTPAT: Business Partners",
    },
    Requirement {
        id: "BP-2",
        category: Category::BusinessPartner,
        level: Level::Should,
        title: "Partners' own AEO or equivalent status is used",
        explanation: "Where a partner holds AEO, CTPAT or a mutually recognised status, record its operator id and rely on it; otherwise ask for written security commitments.",
        source: CTPAT,
        es: Localised {
            title: "Se aprovecha la condición OEA o equivalente de los socios",
            explanation: "Cuando un socio tenga la condición OEA, CTPAT o una reconocida mutuamente, registre su identificador de operador y apóyese en ella; si no, pida compromisos de seguridad por escrito.",
        },
        pt: Localised {
            title: "A condição OEA ou equivalente dos parceiros é aproveitada",
            explanation: "Quando um parceiro tiver a condição OEA, CTPAT ou uma reconhecida mutuamente, registre seu identificador de operador e apoie-se nela; caso contrário, peça compromissos de segurança por escrito.",
        },
        section: "Business Partners",
    },
    Requirement {
        id: "CS-1",
        category: Category::ContainerSeal,
        level: Level::Must,
        title: "High-security seals meeting ISO 17712 on every loaded container",
        explanation: "Only seals classed H under ISO 17712 are affixed to loaded containers bound for the programme's ports; seal numbers are recorded on the shipping documents.",
        source: CTPAT,
        es: Localised {
            title: "Precintos de alta seguridad según ISO 17712 en todo contenedor cargado",
            explanation: "Solo se colocan precintos de clase H según ISO 17712 en los contenedores cargados con destino a los puertos del programa; los números de precinto constan en los documentos de embarque.",
        },
        pt: Localised {
            title: "Lacres de alta segurança conforme a ISO 17712 em todo contêiner carregado",
            explanation: "Somente lacres da classe H da ISO 17712 são aplicados a contêineres carregados com destino aos portos do programa; os números dos lacres constam dos documentos de embarque.",
        },
        section: "Seal Security",
    },
    Requirement {
        id: "CS-2",
        category: Category::ContainerSeal,
        level: Level::Must,
        title: "Seals are controlled, logged and verified",
        explanation: "Seal stock is kept locked, issued by named staff, logged by number, and each seal is checked by the view-verify-tug-twist method when affixed and on arrival.",
        source: CTPAT,
        es: Localised {
            title: "Los precintos se controlan, registran y verifican",
            explanation: "Las existencias de precintos se guardan bajo llave, las entrega personal designado, se registran por número y cada precinto se comprueba con el método ver-verificar-tirar-girar al colocarlo y a la llegada.",
        },
        pt: Localised {
            title: "Os lacres são controlados, registrados e verificados",
            explanation: "O estoque de lacres fica trancado, é entregue por pessoal designado, registrado por número, e cada lacre é conferido pelo método ver-verificar-puxar-girar ao ser aplicado e na chegada.",
        },
        section: "Seal Security",
    },
    Requirement {
        id: "CV-1",
        category: Category::Conveyance,
        level: Level::Must,
        title: "Containers and trucks are inspected before loading",
        explanation: "A documented multi-point inspection of every container, trailer and tractor is done before stuffing, signed by the inspector, with findings reported.",
        source: CTPAT,
        es: Localised {
            title: "Contenedores y camiones se inspeccionan antes de la carga",
            explanation: "Antes de cargar se hace una inspección documentada de varios puntos de cada contenedor, remolque y tractor, firmada por el inspector, y se informan los hallazgos.",
        },
        pt: Localised {
            title: "Contêineres e caminhões são inspecionados antes do carregamento",
            explanation: "Antes do carregamento é feita uma inspeção documentada de vários pontos de cada contêiner, reboque e cavalo mecânico, assinada pelo inspetor, e as constatações são comunicadas.",
        },
        section: "Conveyance and Instruments of International Traffic Security",
    },
    Requirement {
        id: "CV-2",
        category: Category::Conveyance,
        level: Level::Should,
        title: "Conveyances are tracked in transit",
        explanation: "Trucks carrying goods to the programme's ports are tracked (GPS or check-ins) and unexplained stops or route deviations are investigated.",
        source: SAFE,
        es: Localised {
            title: "Los medios de transporte se siguen en tránsito",
            explanation: "Los camiones que llevan mercancías a los puertos del programa se siguen (GPS o controles de paso) y se investigan las paradas o desvíos de ruta sin explicación.",
        },
        pt: Localised {
            title: "Os veículos são rastreados em trânsito",
            explanation: "Os caminhões que levam mercadorias aos portos do programa são rastreados (GPS ou pontos de controle) e paradas ou desvios de rota sem explicação são investigados.",
        },
        section: "Conveyance security",
    },
    Requirement {
        id: "PR-1",
        category: Category::Procedural,
        level: Level::Must,
        title: "Shipping documents are complete, accurate and protected",
        explanation: "Cargo is checked against the order and manifest (pieces, weight, marks); discrepancies are resolved and reported; documents are protected against change and loss.",
        source: SAFE,
        es: Localised {
            title: "Los documentos de embarque son completos, exactos y están protegidos",
            explanation: "La carga se coteja con el pedido y el manifiesto (bultos, peso, marcas); las discrepancias se resuelven e informan; los documentos se protegen contra cambios y pérdidas.",
        },
        pt: Localised {
            title: "Os documentos de embarque são completos, exatos e protegidos",
            explanation: "A carga é conferida com o pedido e o manifesto (volumes, peso, marcas); as divergências são resolvidas e comunicadas; os documentos são protegidos contra alteração e perda.",
        },
        section: "Cargo security",
    },
    Requirement {
        id: "PR-2",
        category: Category::Procedural,
        level: Level::Must,
        title: "Security incidents are reported to customs",
        explanation: "A written procedure says who reports anomalies, tampered seals and suspected smuggling to customs and other authorities, and how quickly.",
        source: SAFE,
        es: Localised {
            title: "Los incidentes de seguridad se comunican a la aduana",
            explanation: "Un procedimiento escrito indica quién comunica a la aduana y otras autoridades las anomalías, los precintos manipulados y la sospecha de contrabando, y en qué plazo.",
        },
        pt: Localised {
            title: "Os incidentes de segurança são comunicados à aduana",
            explanation: "Um procedimento escrito indica quem comunica à aduana e a outras autoridades anomalias, lacres violados e suspeitas de contrabando, e em que prazo.",
        },
        section: "Crisis management and incident recovery",
    },
    Requirement {
        id: "PA-1",
        category: Category::PhysicalAccess,
        level: Level::Must,
        title: "Access to cargo areas is controlled",
        explanation: "Employees, visitors and drivers are identified at entry; visitors are escorted; access badges are issued, recovered and revoked under a procedure.",
        source: CTPAT,
        es: Localised {
            title: "El acceso a las zonas de carga está controlado",
            explanation: "Empleados, visitantes y conductores se identifican al entrar; los visitantes van acompañados; las credenciales de acceso se emiten, recuperan y anulan según un procedimiento.",
        },
        pt: Localised {
            title: "O acesso às áreas de carga é controlado",
            explanation: "Funcionários, visitantes e motoristas são identificados na entrada; visitantes são acompanhados; crachás de acesso são emitidos, recolhidos e cancelados conforme um procedimento.",
        },
        section: "Physical Access Controls",
    },
    Requirement {
        id: "PA-2",
        category: Category::PhysicalAccess,
        level: Level::Should,
        title: "Premises are fenced, lit and watched",
        explanation: "Cargo handling and storage areas have perimeter barriers, adequate lighting and, where the risk calls for it, alarms or video surveillance that is reviewed.",
        source: CTPAT,
        es: Localised {
            title: "Las instalaciones están cercadas, iluminadas y vigiladas",
            explanation: "Las zonas de manipulación y almacenamiento de carga tienen barreras perimetrales, iluminación suficiente y, cuando el riesgo lo exige, alarmas o videovigilancia que se revisa.",
        },
        pt: Localised {
            title: "As instalações são cercadas, iluminadas e vigiadas",
            explanation: "As áreas de manuseio e armazenagem de carga têm barreiras perimetrais, iluminação adequada e, quando o risco exige, alarmes ou videomonitoramento que é revisado.",
        },
        section: "Physical Security",
    },
    Requirement {
        id: "PE-1",
        category: Category::Personnel,
        level: Level::Must,
        title: "Staff in security-sensitive posts are vetted",
        explanation: "Applicants for posts touching cargo, seals or data are checked as the law allows (identity, employment history, criminal records) and re-checked periodically.",
        source: SAFE,
        es: Localised {
            title: "El personal en puestos sensibles para la seguridad se verifica",
            explanation: "Los candidatos a puestos relacionados con carga, precintos o datos se verifican en la medida que la ley permite (identidad, historial laboral, antecedentes penales) y se vuelven a verificar periódicamente.",
        },
        pt: Localised {
            title: "O pessoal em funções sensíveis para a segurança é verificado",
            explanation: "Candidatos a funções ligadas a carga, lacres ou dados são verificados na medida em que a lei permite (identidade, histórico profissional, antecedentes criminais) e verificados novamente de forma periódica.",
        },
        section: "Personnel security",
    },
    Requirement {
        id: "TR-1",
        category: Category::Training,
        level: Level::Must,
        title: "Staff are trained to recognise threats",
        explanation: "A training programme covers seal checks, conveyance inspection, internal conspiracies and how to report; attendance is recorded and refreshed at least yearly.",
        source: CTPAT,
        es: Localised {
            title: "El personal está capacitado para reconocer amenazas",
            explanation: "Un programa de capacitación cubre la revisión de precintos, la inspección de medios de transporte, las conspiraciones internas y cómo informar; la asistencia se registra y se renueva al menos cada año.",
        },
        pt: Localised {
            title: "O pessoal é treinado para reconhecer ameaças",
            explanation: "Um programa de treinamento cobre a conferência de lacres, a inspeção de veículos, as conspirações internas e como comunicar; a presença é registrada e renovada ao menos uma vez por ano.",
        },
        section: "Security Training and Threat Awareness",
    },
    Requirement {
        id: "TR-2",
        category: Category::Training,
        level: Level::Should,
        title: "Security awareness is measured",
        explanation: "Drills or tests check that trained staff apply the procedures; results feed the next year's training.",
        source: SAFE,
        es: Localised {
            title: "Se mide la conciencia de seguridad",
            explanation: "Simulacros o pruebas comprueban que el personal capacitado aplica los procedimientos; los resultados alimentan la capacitación del año siguiente.",
        },
        pt: Localised {
            title: "A percepção de segurança é medida",
            explanation: "Simulações ou testes verificam se o pessoal treinado aplica os procedimentos; os resultados orientam o treinamento do ano seguinte.",
        },
        section: "Education, training and awareness",
    },
    Requirement {
        id: "CY-1",
        category: Category::Cybersecurity,
        level: Level::Must,
        title: "Systems that hold cargo data are protected",
        explanation: "Written cybersecurity policies cover individual accounts, strong passwords or multi-factor authentication, software updates, malware protection and backups.",
        source: CTPAT,
        es: Localised {
            title: "Los sistemas con datos de carga están protegidos",
            explanation: "Políticas escritas de ciberseguridad cubren cuentas individuales, contraseñas robustas o autenticación multifactor, actualizaciones de software, protección contra malware y copias de seguridad.",
        },
        pt: Localised {
            title: "Os sistemas com dados de carga são protegidos",
            explanation: "Políticas escritas de cibersegurança cobrem contas individuais, senhas fortes ou autenticação multifator, atualizações de software, proteção contra malware e cópias de segurança.",
        },
        section: "Cybersecurity",
    },
    Requirement {
        id: "CY-2",
        category: Category::Cybersecurity,
        level: Level::Should,
        title: "Cyber incidents are detected and tested for",
        explanation: "Systems are monitored for intrusions, vulnerabilities are scanned at least yearly, and a cyber incident response plan exists and is exercised.",
        source: CTPAT,
        es: Localised {
            title: "Los incidentes cibernéticos se detectan y se ensayan",
            explanation: "Los sistemas se vigilan para detectar intrusiones, las vulnerabilidades se analizan al menos cada año y existe un plan de respuesta a incidentes cibernéticos que se ejercita.",
        },
        pt: Localised {
            title: "Os incidentes cibernéticos são detectados e ensaiados",
            explanation: "Os sistemas são monitorados contra intrusões, as vulnerabilidades são verificadas ao menos uma vez por ano e existe um plano de resposta a incidentes cibernéticos que é exercitado.",
        },
        section: "Cybersecurity",
    },
];
