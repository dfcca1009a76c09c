#!/usr/bin/env python3
"""A Modbus RTU relay board for tests: pymodbus's own serial server (PyPI
`pymodbus`, no code of ours on the protocol side) on a pty path, answering as
one or more slaves with coils.

    modbus_relay.py PATH [--slave 1 ...] [--coils 8] [--baud 9600]

Prints one JSON line per happening on stdout: {"t": unix time, "ev": ...}:
`ready`, then `coil` {slave, coil, on} for each write-coil request it served.
"""
import argparse
import asyncio
import json
import sys
import time

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncSerialServer


def emit(**kw):
    kw["t"] = time.time()
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--slave", type=int, action="append")
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--baud", type=int, default=9600)
    a = ap.parse_args()
    slaves = a.slave or [1]
    devices = {s: ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [False] * a.coils)) for s in slaves}
    context = ModbusServerContext(devices=devices, single=False)

    def trace_pdu(sending, pdu):
        if not sending and pdu.function_code == 5:
            emit(ev="coil", slave=pdu.dev_id, coil=pdu.address, on=bool(pdu.bits[0]) if getattr(pdu, "bits", None) else None)
        return pdu

    async def run():
        emit(ev="ready")
        await StartAsyncSerialServer(context, port=a.path, baudrate=a.baud, trace_pdu=trace_pdu)

    asyncio.run(run())


if __name__ == "__main__":
    main()
