// swift-tools-version:6.0
import PackageDescription

// The Swift targets are built for the x86-64 baseline: the binary runs on any x86-64 CPU. The hot
// loops live in C kernels that choose their instruction set at run time (CI2QKernels: scalar,
// AVX2+FMA+F16C, AVX-512 VNNI — GEMVs, attention dots, half conversions) and in OpenBLAS (which
// dispatches too), so this costs nothing measurable (Benchmarks/README.md, 2026-12-07). See
// docs/numerics.md. I2Q_TARGET_CPU=NAME builds the Swift code for another CPU (`haswell`, `native`);
// such a binary started on a CPU below its target says so and exits (CI2QBuildInfo) instead of
// dying with SIGILL.
let targetCPU = Context.environment["I2Q_TARGET_CPU"] ?? "x86-64"
let native: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]

let package = Package(
    name: "i2q",
    products: [
        .executable(name: "i2q", targets: ["i2q"]),
        .library(name: "I2QFormats", targets: ["I2QFormats"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libzstd-dev, libxxhash-dev).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),

        // Core: dtypes, half conversions, mapped files, errors, progress. No model knowledge.
        .target(name: "I2QCore", dependencies: ["CXXHash", "CI2QFault", "CI2QBuildInfo", "CI2QKernels"], swiftSettings: native),
        // Build facts (commit, date, Swift target CPU) and the start-up check that the CPU can run them.
        .target(name: "CI2QBuildInfo", cSettings: [.define("I2Q_SWIFT_TARGET_CPU", to: "\"\(targetCPU)\"")]),
        // SIGBUS on a mapped input that shrinks mid-read: a message naming the file, cleanup, exit 1.
        .target(name: "CI2QFault"),
        // Formats: safetensors (and later the i2q file, GGUF), model directories and typed configs.
        .target(name: "I2QFormats", dependencies: ["I2QCore", "I2QQuant", "CZstd"], swiftSettings: native),
        // Quantization codecs: one per scheme (NF4/FP4 blockwise + double quant, affine int4), pure math.
        .target(name: "I2QQuant", dependencies: ["I2QCore", "CI2QKernels"], swiftSettings: native),
        // Tokenizers from tokenizer.json (huggingface/tokenizers semantics): one file per stage.
        .target(name: "I2QTokenizer", dependencies: ["I2QCore"], swiftSettings: native),
        // Images: PNG/JPEG decoding and the Idefics2 image processor (PIL-exact resampling).
        .target(name: "I2QImage", dependencies: ["I2QCore", "I2QFormats", "CPNG", "CJPEG"], swiftSettings: native),
        // C kernels for the decode GEMVs: x86 intrinsics (AVX-512 VNNI / BF16) behind runtime CPU
        // dispatch, with portable scalar fallbacks (built for any x86-64 or other CPU).
        .target(name: "CI2QKernels"),
        // CPU reference runtime: kernels, decoder (and later the vision tower), generation.
        .target(name: "I2QRuntime", dependencies: ["I2QCore", "I2QFormats", "I2QQuant", "I2QTokenizer", "I2QImage", "CBLAS", "CI2QKernels"], swiftSettings: native),
        // Evaluation: perplexity (later KL divergence, DocVQA ANLS), reports.
        .target(name: "I2QEval", dependencies: ["I2QCore", "I2QFormats", "I2QTokenizer", "I2QRuntime"], swiftSettings: native),
        // Passes: plan + streaming execution of model transforms (cast today).
        .target(name: "I2QPasses", dependencies: ["I2QCore", "I2QFormats", "I2QQuant", "I2QRuntime", "I2QEval"], swiftSettings: native),
        // CLI only: argument parsing and printing.
        .executableTarget(
            name: "i2q",
            dependencies: [
                "I2QCore", "I2QFormats", "I2QPasses", "I2QRuntime", "I2QEval", "I2QTokenizer", "I2QQuant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: native),

        // Fixture paths and file-crafting helpers shared by the test targets.
        .target(name: "I2QTestSupport", dependencies: ["I2QCore", "I2QFormats", "I2QQuant"], path: "Tests/I2QTestSupport"),
        // Benchmark tool (not installed): runtime speed and memory at real shapes.
        .executableTarget(name: "i2q-bench", dependencies: ["I2QCore", "I2QFormats", "I2QQuant", "I2QRuntime", "CBLAS", "CI2QKernels"],
                          path: "Benchmarks/I2QBench", swiftSettings: native),

        // Fuzzing (issue 17): the readers under mutation, a driver for long runs by hand, a short run in the suite.
        .target(name: "I2QFuzzTargets", dependencies: ["I2QCore", "I2QFormats", "I2QTokenizer", "I2QImage", "I2QEval"],
                path: "Fuzz/Targets", swiftSettings: native),
        .executableTarget(name: "i2q-fuzz", dependencies: ["I2QFuzzTargets", "I2QCore"], path: "Fuzz/Driver", swiftSettings: native),
        .testTarget(name: "I2QFuzzTests", dependencies: ["I2QFuzzTargets", "I2QCore", "I2QTestSupport"], swiftSettings: native),

        .testTarget(name: "I2QCoreTests", dependencies: ["I2QCore", "I2QFormats", "I2QTestSupport", "CI2QKernels"], swiftSettings: native),
        .testTarget(name: "I2QFormatsTests", dependencies: ["I2QFormats", "I2QQuant", "I2QCore", "I2QTestSupport", "I2QTokenizer", "I2QPasses"], swiftSettings: native),
        .testTarget(name: "I2QPassesTests", dependencies: ["I2QPasses", "I2QFormats", "I2QCore", "I2QTestSupport"], swiftSettings: native),
        // Runs the built `i2q` binary: exit codes and messages users see.
        .testTarget(name: "I2QCLITests", dependencies: ["i2q", "I2QCore", "I2QFormats", "I2QTestSupport"]),
        .testTarget(name: "I2QRuntimeTests", dependencies: ["I2QRuntime", "I2QPasses", "I2QFormats", "I2QCore", "I2QTestSupport"], swiftSettings: native),
        .testTarget(name: "I2QEvalTests", dependencies: ["I2QEval", "I2QRuntime", "I2QPasses", "I2QFormats", "I2QCore", "I2QTestSupport"], swiftSettings: native),
        .testTarget(name: "I2QImageTests", dependencies: ["I2QImage", "I2QCore", "I2QFormats", "I2QTestSupport"], swiftSettings: native),
        .testTarget(name: "I2QQuantTests", dependencies: ["I2QQuant", "I2QCore", "I2QFormats", "I2QTestSupport"], swiftSettings: native),
        .testTarget(name: "I2QTokenizerTests", dependencies: ["I2QTokenizer", "I2QCore", "I2QTestSupport"], swiftSettings: native),
    ]
)
