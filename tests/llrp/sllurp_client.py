"""An independent LLRP client (sllurp, from PyPI) driving aeogate's virtual reader.

Usage: python sllurp_client.py HOST PORT SECONDS ANTENNA[,ANTENNA...]

Connects, lets sllurp configure the reader its own way (reset, capabilities, ROSpec with
an inventory on the given antennas, keepalives), collects tag reports for SECONDS, then
disconnects and prints one JSON object: {"tags": {"EPCHEX": [antennas...]}, "reports": N,
"state": last sllurp state name}. Exit status 0 when sllurp reached the inventorying state.
"""
import json
import logging
import os
import sys
import threading
import time

from sllurp.llrp import LLRPReaderClient, LLRPReaderConfig, LLRPReaderState


def main():
    host, port, seconds, antennas = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    antennas = [int(a) for a in antennas.split(",")]
    logging.basicConfig(level=logging.WARNING)
    config = LLRPReaderConfig({
        "antennas": antennas,
        "tx_power": 0,
        "report_every_n_tags": 1,
        "keepalive_interval": 1000,
        "tag_content_selector": {
            "EnableROSpecID": True,
            "EnableSpecIndex": False,
            "EnableInventoryParameterSpecID": False,
            "EnableAntennaID": True,
            "EnableChannelIndex": False,
            "EnablePeakRSSI": True,
            "EnableFirstSeenTimestamp": True,
            "EnableLastSeenTimestamp": False,
            "EnableTagSeenCount": True,
            "EnableAccessSpecID": False,
        },
    })
    seen = {}
    reports = [0]
    lock = threading.Lock()
    inventorying = threading.Event()

    def on_tags(_reader, tags):
        with lock:
            for t in tags:
                epc = t.get("EPC-96") or t.get("EPC") or t.get("EPCData", {}).get("EPC")
                if isinstance(epc, bytes):
                    epc = epc.decode("ascii")
                ant = t.get("AntennaID")
                if isinstance(ant, (list, tuple)):
                    ant = ant[0]
                seen.setdefault(str(epc).upper(), set()).add(ant)
                reports[0] += 1

    def on_state(reader, state):
        if state == LLRPReaderState.STATE_INVENTORYING:
            inventorying.set()

    reader = LLRPReaderClient(host, port, config, timeout=5.0)
    reader.add_tag_report_callback(on_tags)
    reader.add_state_callback(LLRPReaderState.STATE_INVENTORYING, on_state)
    reader.connect()
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.05)
    state = reader.llrp.state
    reader.disconnect(timeout=2)
    with lock:
        out = {
            "tags": {k: sorted(a for a in v if a is not None) for k, v in seen.items()},
            "reports": reports[0],
            "state": LLRPReaderState.getStateName(state) if hasattr(LLRPReaderState, "getStateName") else str(state),
            "inventorying": inventorying.is_set(),
        }
    print(json.dumps(out), flush=True)
    # sllurp's connection threads are not daemons: one that did not finish its
    # disconnect would keep the interpreter waiting at exit. Everything the test reads
    # is printed; leave at once.
    os._exit(0 if inventorying.is_set() else 1)


if __name__ == "__main__":
    main()
