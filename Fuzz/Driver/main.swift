// i2q-fuzz: runs the readers of I2QFuzzTargets on mutated inputs, in process, for long runs by hand.
//
//   i2q-fuzz [--target NAME|all] [--count N] [--seed S] [--first K] [--fixtures DIR] [--out DIR] [--json]
//
// Input k of a target is a pure function of (seed, k): `--first k --count 1` replays it. A trap or a
// signal (SIGILL/SIGTRAP/SIGSEGV/SIGBUS/SIGABRT/SIGFPE) writes the input to OUT/crash-TARGET-SEED-K.bin
// and exits with 128+signal; an input running over 60 s writes OUT/hang-…bin and exits 124; the
// address space is capped at 8 GiB so an unbounded allocation fails loudly instead of swapping. The
// JSON line per target gives inputs, errors, errors not naming the file (with examples), the slowest
// input and the peak RSS of the process so far.
import Foundation
import I2QCore
import I2QFuzzTargets

var target = "all", count = 10_000, seed: UInt64 = 1, first = 0, json = false
var fixtures = "Tests/Fixtures", out = "."
var args = Array(CommandLine.arguments.dropFirst())
while !args.isEmpty {
    let a = args.removeFirst()
    func value() -> String {
        guard !args.isEmpty else { FileHandle.standardError.write("\(a) needs a value\n".data(using: .utf8)!); exit(2) }
        return args.removeFirst()
    }
    switch a {
    case "--target": target = value()
    case "--count": count = Int(value()) ?? count
    case "--seed": seed = UInt64(value()) ?? seed
    case "--first": first = Int(value()) ?? first
    case "--fixtures": fixtures = value()
    case "--out": out = value()
    case "--json": json = true
    default:
        FileHandle.standardError.write("unknown argument \(a)\n".data(using: .utf8)!)
        exit(2)
    }
}

// The input in flight, kept where a signal handler can write it out (async-signal-safe: write(2)).
nonisolated(unsafe) var crashBuffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 8 << 20)
nonisolated(unsafe) var crashCount = 0
nonisolated(unsafe) var crashPath = UnsafeMutablePointer<CChar>.allocate(capacity: 4096)
nonisolated(unsafe) var hangPath = UnsafeMutablePointer<CChar>.allocate(capacity: 4096)

func setPath(_ p: UnsafeMutablePointer<CChar>, _ s: String) {
    let u = Array(s.utf8.prefix(4095))
    for (i, c) in u.enumerated() { p[i] = CChar(bitPattern: c) }
    p[u.count] = 0
}

func dumpInput(_ path: UnsafeMutablePointer<CChar>) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if fd >= 0 { _ = write(fd, crashBuffer, crashCount); close(fd) }
}

let onCrash: @convention(c) (Int32) -> Void = { sig in
    dumpInput(crashPath)
    signal(sig, SIG_DFL)
    raise(sig)
}
let onHang: @convention(c) (Int32) -> Void = { _ in
    dumpInput(hangPath)
    _exit(124)
}
for s in [SIGILL, SIGTRAP, SIGSEGV, SIGABRT, SIGFPE] { signal(s, onCrash) }
signal(SIGALRM, onHang)
// SIGBUS from a mapped input is the product's own handler (names the file, exit 1): a mutated input
// is held in memory here, so any SIGBUS is a real crash.
signal(SIGBUS, onCrash)
var limit = rlimit(rlim_cur: 8 << 30, rlim_max: 8 << 30)
setrlimit(Int32(RLIMIT_AS.rawValue), &limit)

func peakRSSMiB() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

let all: [FuzzTarget]
do { all = try FuzzTargets.all(fixtures: fixtures) } catch {
    FileHandle.standardError.write("cannot load the seeds from \(fixtures): \(error)\n".data(using: .utf8)!)
    exit(2)
}
let chosen = target == "all" ? all : all.filter { $0.name == target }
guard !chosen.isEmpty else {
    FileHandle.standardError.write("unknown target \(target); targets: \(all.map(\.name).joined(separator: ", "))\n".data(using: .utf8)!)
    exit(2)
}
try? FileSystem.makeDirectory(out)
let scratchRoot = NSTemporaryDirectory() + "i2q-fuzz-\(getpid())"
try? FileSystem.makeDirectory(scratchRoot)
defer { FileSystem.removeTree(scratchRoot) }

var failed = false
for t in chosen {
    let scratch = scratchRoot + "/" + t.name
    try? FileSystem.makeDirectory(scratch)
    let stats = FuzzRunner.run(t, count: count, seed: seed, first: first, scratch: scratch) { b, k in
        alarm(60)
        crashCount = min(b.count, 8 << 20)
        b.withUnsafeBufferPointer { crashBuffer.update(from: $0.baseAddress!, count: crashCount) }
        setPath(crashPath, "\(out)/crash-\(t.name)-\(seed)-\(k).bin")
        setPath(hangPath, "\(out)/hang-\(t.name)-\(seed)-\(k).bin")
    }
    alarm(0)
    if stats.unnamed > 0 { failed = true }
    let line: JSONValue = .object([
        ("target", .string(t.name)), ("seed", .int(Int(seed))), ("first", .int(first)), ("inputs", .int(stats.inputs)),
        ("accepted", .int(stats.accepted)), ("errors", .int(stats.errors)), ("errors_not_naming_file", .int(stats.unnamed)),
        ("examples", .array(stats.unnamedExamples.map { .string($0) })),
        ("slowest_input_s", .number(formatFixed(stats.slowestSeconds, 4))), ("seconds", .number(formatFixed(stats.seconds, 2))),
        ("peak_rss_mib", .number(formatFixed(peakRSSMiB(), 1))),
    ])
    print(json ? JSONWriter.string(line) : "\(t.name): \(stats.inputs) inputs, \(stats.accepted) accepted, \(stats.errors) errors (\(stats.unnamed) not naming the file), slowest \(formatFixed(stats.slowestSeconds, 3)) s, \(formatFixed(stats.seconds, 1)) s, peak RSS \(formatFixed(peakRSSMiB(), 0)) MiB")
    for e in stats.unnamedExamples { print("  " + e) }
    fflush(nil)
}
exit(failed ? 1 : 0)
