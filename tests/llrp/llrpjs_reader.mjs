// A fixed reader written with an independent LLRP implementation (llrpjs, from npm), for
// the edge agent's LLRP client to talk to (tests/llrp_interop.rs).
//
// Usage: node llrpjs_reader.mjs PORT
//
// Listens on 127.0.0.1:PORT and prints one JSON line per event on standard output:
// {"event":"listening"}, {"event":"connection"}, {"event":"message","name":…,"id":…} for
// every message the client sent (decoded by llrpjs: a message it cannot decode ends in
// {"event":"error"}), {"event":"rospec",…} with the ROSpec's antennas and power rows,
// {"event":"config","keepalive_ms":…} with the keepalive period asked for. Standard input takes commands, one per line:
//   arrive ANTENNA EPCHEX   a tag enters the antenna's field
//   leave ANTENNA           the antenna's field empties
//   antenna ANTENNA 0|1     the antenna's cable is pulled / plugged (AntennaEvent)
//   quit                    close and exit
// While the client's ROSpec is started it reports the tags in the field every 200 ms
// (AntennaID, PeakRSSI, FirstSeenTimestampUTC) and sends KEEPALIVEs at the period the
// client configured. Everything stops after 120 s at the latest.
import llrpjs from "llrpjs";
import readline from "node:readline";

const { LLRPServer, LLRPCore } = llrpjs;
const port = Number(process.argv[2]);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const reader = new LLRPServer({ host: "127.0.0.1", port });
const field = new Map(); // antenna -> [EPC bytes]
const unplugged = new Set(); // antennas whose cable is pulled
let started = false;
let keepaliveTimer = null;
let reportTimer = null;
let keepaliveId = 1000;

const ok = (Kind, request, text) => {
    const rsp = new Kind({
        data: { LLRPStatus: { StatusCode: "M_Success", ErrorDescription: text } },
    });
    rsp.id = request.id;
    return reader.send(rsp);
};

const notify = (data) =>
    reader.send(
        new LLRPCore.READER_EVENT_NOTIFICATION({
            data: {
                ReaderEventNotificationData: {
                    UTCTimestamp: { Microseconds: new Date() },
                    ...data,
                },
            },
        }),
    );

const stopTimers = () => {
    clearInterval(keepaliveTimer);
    clearInterval(reportTimer);
    keepaliveTimer = null;
    reportTimer = null;
    started = false;
};

reader.on("connection", async () => {
    say({ event: "connection" });
    await notify({ ConnectionAttemptEvent: { Status: "Success" } });
});
reader.on("disconnect", () => {
    stopTimers();
    say({ event: "disconnect" });
});
reader.on("error", (err) => say({ event: "error", error: String(err && err.message) }));

reader.on("message", (msg) => say({ event: "message", name: msg.getName(), id: msg.id }));

reader.on("GET_READER_CAPABILITIES", async (msg) => {
    const rsp = new LLRPCore.GET_READER_CAPABILITIES_RESPONSE({
        data: {
            LLRPStatus: { StatusCode: "M_Success", ErrorDescription: "" },
            GeneralDeviceCapabilities: {
                MaxNumberOfAntennaSupported: 4,
                CanSetAntennaProperties: false,
                HasUTCClockCapability: true,
                DeviceManufacturerName: 0,
                ModelName: 1,
                ReaderFirmwareVersion: "llrpjs test reader",
                ReceiveSensitivityTableEntry: { Index: 1, ReceiveSensitivityValue: 0 },
                GPIOCapabilities: { NumGPIs: 0, NumGPOs: 0 },
                PerAntennaAirProtocol: [1, 2, 3, 4].map((a) => ({
                    AntennaID: a,
                    ProtocolID: ["EPCGlobalClass1Gen2"],
                })),
            },
            RegulatoryCapabilities: {
                CountryCode: 0,
                CommunicationsStandard: "Unspecified",
                UHFBandCapabilities: {
                    // 15.00 to 31.50 dBm in 0.5 dB steps, indices 1..34.
                    TransmitPowerLevelTableEntry: Array.from({ length: 34 }, (_, i) => ({
                        Index: i + 1,
                        TransmitPowerValue: 1500 + 50 * i,
                    })),
                    FrequencyInformation: {
                        Hopping: true,
                        FrequencyHopTable: { HopTableID: 1, Frequency: [866900] },
                    },
                    C1G2UHFRFModeTable: {
                        C1G2UHFRFModeTableEntry: {
                            ModeIdentifier: 0,
                            DRValue: "DRV_8",
                            EPCHAGTCConformance: true,
                            MValue: "MV_4",
                            ForwardLinkModulation: "DSB_ASK",
                            SpectralMaskIndicator: "Unknown",
                            BDRValue: 250000,
                            PIEValue: 1500,
                            MinTariValue: 12500,
                            MaxTariValue: 25000,
                            StepTariValue: 0,
                        },
                    },
                },
            },
        },
    });
    rsp.id = msg.id;
    await reader.send(rsp);
});
reader.on("GET_READER_CONFIG", async (msg) => {
    const rsp = new LLRPCore.GET_READER_CONFIG_RESPONSE({
        data: {
            LLRPStatus: { StatusCode: "M_Success", ErrorDescription: "" },
            AntennaProperties: [1, 2, 3, 4].map((a) => ({
                AntennaConnected: !unplugged.has(a),
                AntennaID: a,
                AntennaGain: 600,
            })),
        },
    });
    rsp.id = msg.id;
    await reader.send(rsp);
});
reader.on("DELETE_ROSPEC", (msg) => ok(LLRPCore.DELETE_ROSPEC_RESPONSE, msg, "deleted"));
reader.on("ADD_ROSPEC", async (msg) => {
    // The message as llrpjs decoded it, as plain data.
    const spec = msg.toLLRPData().data.ROSpec;
    const list = (x) => (x === undefined ? [] : [].concat(x));
    const ai = list(spec.AISpec);
    const configs = ai.flatMap((a) =>
        list(a.InventoryParameterSpec).flatMap((i) => list(i.AntennaConfiguration)),
    );
    say({
        event: "rospec",
        rospec_id: spec.ROSpecID,
        antennas: ai.flatMap((a) => list(a.AntennaIDs)),
        power: configs.map((c) => c.RFTransmitter?.TransmitPower),
    });
    await ok(LLRPCore.ADD_ROSPEC_RESPONSE, msg, "added");
});
reader.on("ENABLE_ROSPEC", (msg) => ok(LLRPCore.ENABLE_ROSPEC_RESPONSE, msg, "enabled"));
reader.on("SET_READER_CONFIG", async (msg) => {
    await ok(LLRPCore.SET_READER_CONFIG_RESPONSE, msg, "configured");
    const k = msg.getKeepaliveSpec();
    const period = k ? Number(k.getPeriodicTriggerValue()) : 0;
    say({ event: "config", keepalive_ms: period });
    clearInterval(keepaliveTimer);
    if (period > 0) {
        keepaliveTimer = setInterval(() => {
            const m = new LLRPCore.KEEPALIVE({ data: {} });
            m.id = keepaliveId++;
            reader.send(m).catch(() => {});
        }, period);
    }
});
reader.on("START_ROSPEC", async (msg) => {
    await ok(LLRPCore.START_ROSPEC_RESPONSE, msg, "started");
    started = true;
    clearInterval(reportTimer);
    reportTimer = setInterval(() => {
        if (!started) return;
        const reports = [];
        for (const [antenna, epcs] of field) {
            for (const epc of epcs) {
                reports.push({
                    ...(epc.length === 12 ? { EPC_96: { EPC: epc } } : { EPCData: { EPC: epc } }),
                    AntennaID: { AntennaID: antenna },
                    PeakRSSI: { PeakRSSI: -58 },
                    FirstSeenTimestampUTC: { Microseconds: new Date() },
                });
            }
        }
        if (reports.length > 0) {
            reader
                .send(new LLRPCore.RO_ACCESS_REPORT({ data: { TagReportData: reports } }))
                .catch(() => {});
        }
    }, 200);
});
reader.on("CLOSE_CONNECTION", async (msg) => {
    await ok(LLRPCore.CLOSE_CONNECTION_RESPONSE, msg, "closing");
    await reader.disconnect();
});

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
    const [cmd, a, b] = line.trim().split(/\s+/);
    if (cmd === "arrive") {
        const epc = Array.from(Buffer.from(b, "hex"));
        field.set(Number(a), [...(field.get(Number(a)) ?? []), epc]);
    } else if (cmd === "leave") {
        field.delete(Number(a));
    } else if (cmd === "antenna") {
        if (b === "1") unplugged.delete(Number(a));
        else unplugged.add(Number(a));
        await notify({
            AntennaEvent: {
                EventType: b === "1" ? "Antenna_Connected" : "Antenna_Disconnected",
                AntennaID: Number(a),
            },
        });
    } else if (cmd === "quit") {
        stopTimers();
        await reader.close();
        process.exit(0);
    }
    say({ event: "done", command: cmd });
});
lines.on("close", async () => {
    stopTimers();
    await reader.close().catch(() => {});
    process.exit(0);
});

setTimeout(() => process.exit(3), 120_000).unref();
reader.listen();
reader._server.on("listening", () => say({ event: "listening" }));
