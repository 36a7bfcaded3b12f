"""CPU speed tricks applied to a built model or the process: Winograd convolutions, BatchNorm
folding, glibc allocator tuning. Light at import: nothing here imports torch until used."""
