"""Zeroes the GPU code of every architecture but one in a CUDA library's
fat binaries, so that the file compresses to a fraction of its size for a
transfer to a host of that architecture (see scripts/gpu-pack.sh).

    python3 fatbin-keep-arch.py IN OUT ARCH      # ARCH e.g. 90 for sm_90

A fat binary is a 16-byte header (magic 0xBA55ED50, version 1, header size
16, payload size) followed by entries, each a header (kind, version, header
size, payload size, ..., SM architecture at byte 28) and its payload. Only
the payloads of other architectures are zeroed; every header, offset and
size stays, so the library loads as before and picks the kept
architecture's code on a matching GPU. The output cannot run on any other
GPU architecture.
"""
import struct
import sys

MAGIC = struct.pack("<I", 0xBA55ED50)


def keep_arch(data: bytearray, keep: int) -> tuple[int, int]:
    position, zeroed, kept = 0, 0, 0
    while True:
        position = data.find(MAGIC, position)
        if position < 0:
            return zeroed, kept
        version, header_size, fat_size = struct.unpack_from("<HHQ", data, position + 4)
        if version != 1 or header_size != 16:
            position += 4
            continue
        entry, end = position + header_size, position + header_size + fat_size
        while entry < end:
            _kind, _ver, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            start = entry + entry_header
            if arch == keep:
                kept += payload
            else:
                data[start:start + payload] = bytes(payload)
                zeroed += payload
            entry = start + payload
        position = end


def main() -> None:
    source, target, arch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = bytearray(open(source, "rb").read())
    zeroed, kept = keep_arch(data, arch)
    if kept == 0:
        sys.exit(f"no sm_{arch} code in {source}: nothing would run")
    open(target, "wb").write(data)
    print(f"kept {kept >> 20} MiB of sm_{arch} code, zeroed {zeroed >> 20} MiB of other architectures")


if __name__ == "__main__":
    main()
