import Foundation
import I2QCore

/// Idefics2 image-processor and processor settings.
///
/// 4.x checkpoints keep the image processor in `preprocessor_config.json` and `image_seq_len` in
/// `processor_config.json`; transformers 5.x nests the image processor under `image_processor` in
/// `processor_config.json`. Both are read; defaults are Idefics2ImageProcessor's.
public struct ProcessorConfig: Sendable, Equatable {
    public var doConvertRGB = true
    public var doResize = true
    public var longestEdge = 980
    public var shortestEdge = 378
    public var doRescale = true
    public var rescaleFactor = 1.0 / 255.0
    public var doNormalize = true
    public var imageMean: [Double] = [0.5, 0.5, 0.5]
    public var imageStd: [Double] = [0.5, 0.5, 0.5]
    public var doPad = true
    public var doImageSplitting = false
    public var imageSeqLen = 64
    /// Idefics3/SmolVLM: the tile edge images are split into (`max_image_size.longest_edge`).
    public var maxImageSize = 364
    /// PIL resampling filter (`resample`): 2 BILINEAR (Idefics2's default), 1 LANCZOS (Idefics3's).
    public var resample = 2
    /// Where the image settings came from (for `inspect`).
    public var source = "defaults"

    public init() {}

    /// Idefics3ImageProcessor's / SmolVLMImageProcessor's defaults (transformers 5.24) and
    /// Idefics3Processor's image_seq_len.
    public static var idefics3: ProcessorConfig {
        var c = ProcessorConfig()
        c.longestEdge = 4 * 364; c.shortestEdge = 1; c.maxImageSize = 364; c.resample = 1
        c.doImageSplitting = true; c.imageSeqLen = 169
        return c
    }

    mutating func apply(_ c: KeyedDecodingContainer<AnyKey>) throws {
        doConvertRGB = try c.value("do_convert_rgb", default: doConvertRGB)
        doResize = try c.value("do_resize", default: doResize)
        if c.has("size"), try !c.decodeNil(forKey: AnyKey("size")) {
            let s = try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey("size"))
            longestEdge = try s.value("longest_edge", default: longestEdge)
            shortestEdge = try s.value("shortest_edge", default: shortestEdge)
        }
        doRescale = try c.value("do_rescale", default: doRescale)
        rescaleFactor = try c.value("rescale_factor", default: rescaleFactor)
        doNormalize = try c.value("do_normalize", default: doNormalize)
        imageMean = try c.value("image_mean", default: imageMean)
        imageStd = try c.value("image_std", default: imageStd)
        doPad = try c.value("do_pad", default: doPad)
        doImageSplitting = try c.value("do_image_splitting", default: doImageSplitting)
        if c.has("max_image_size"), try !c.decodeNil(forKey: AnyKey("max_image_size")) {
            let s = try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey("max_image_size"))
            maxImageSize = try s.value("longest_edge", default: maxImageSize)
        }
        resample = try c.value("resample", default: resample)
    }

    /// Reads the processor settings of a model directory (files may be absent: defaults apply).
    public static func load(directory: String) throws -> ProcessorConfig? {
        try load(source: directory) { name in
            let p = directory + "/" + name
            return FileSystem.exists(p) ? try FileSystem.readFile(p) : nil
        }
    }

    /// Reads the settings from the model's files (`file(name)` gives a file's bytes or nil).
    public static func load(source: String, defaults: ProcessorConfig = ProcessorConfig(),
                            file: (String) throws -> [UInt8]?) throws -> ProcessorConfig? {
        var cfg = defaults
        var found = false
        if let pre = try file("preprocessor_config.json") {
            found = true
            try withConfigObject(Data(pre), path: source + "/preprocessor_config.json") { c in try cfg.apply(c) }
            cfg.source = "preprocessor_config.json"
        }
        if let proc = try file("processor_config.json") {
            found = true
            try withConfigObject(Data(proc), path: source + "/processor_config.json") { c in
                cfg.imageSeqLen = try c.value("image_seq_len", default: cfg.imageSeqLen)
                if c.has("image_processor") {
                    try cfg.apply(c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey("image_processor")))
                    cfg.source = "processor_config.json (image_processor)"
                }
            }
        }
        if found { try cfg.validate(source: source) }
        return found ? cfg : nil
    }

    /// Largest accepted `size` edge and `image_seq_len` (Idefics2-8B uses 980 / 378 and 64; Pillow-exact
    /// resizing allocates edge² floats, so an edge of 10⁶ would ask for terabytes).
    public static let maxEdge = 16384
    public static let maxImageSeqLen = 65536

    /// Range checks of every numeric field, naming the file that set it.
    func validate(source: String) throws {
        let file = source + "/" + (self.source.hasPrefix("processor_config") ? "processor_config.json" : "preprocessor_config.json")
        func bad(_ d: String) -> ConfigError { .invalid(path: file, detail: d + "; fix the value (Idefics2-8B's processor files have the defaults)") }
        guard (1...Self.maxImageSeqLen).contains(imageSeqLen) else {
            throw ConfigError.invalid(path: source + "/processor_config.json", detail: "image_seq_len \(imageSeqLen) is outside 1…\(Self.maxImageSeqLen); it must equal the perceiver's resampler_n_latents (64 for Idefics2-8B)")
        }
        guard (1...Self.maxEdge).contains(longestEdge), (1...Self.maxEdge).contains(shortestEdge) else {
            throw bad("size {longest_edge \(longestEdge), shortest_edge \(shortestEdge)} is outside 1…\(Self.maxEdge)")
        }
        guard (1...Self.maxEdge).contains(maxImageSize) else { throw bad("max_image_size {longest_edge \(maxImageSize)} is outside 1…\(Self.maxEdge)") }
        guard rescaleFactor.isFinite else { throw bad("rescale_factor \(rescaleFactor) is not finite") }
        guard imageMean.count == 3, imageStd.count == 3 else {
            throw bad("image_mean and image_std need 3 values each (got \(imageMean.count) and \(imageStd.count))")
        }
        guard imageMean.allSatisfy(\.isFinite), imageStd.allSatisfy({ $0.isFinite && $0 != 0 }) else {
            throw bad("image_mean \(imageMean) / image_std \(imageStd) must be finite, with no zero std")
        }
    }
}

/// generation_config.json (the fields i2q uses).
public struct GenerationConfig: Sendable, Equatable {
    public var bosTokenId: Int?
    public var eosTokenIds: [Int] = []
    public var padTokenId: Int?
    public var maxLength: Int?
    public var doSample = false
    /// `bad_words_ids`: token sequences generation must not produce.
    public var badWordsIds: [[Int]] = []

    public static func load(path: String) throws -> GenerationConfig? {
        guard FileSystem.exists(path) else { return nil }
        return try decode(try FileSystem.readFile(path), path: path)
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> GenerationConfig {
        try withConfigObject(Data(bytes), path: path) { c in
            var g = GenerationConfig()
            g.bosTokenId = try c.optional("bos_token_id")
            g.eosTokenIds = (try c.optional("eos_token_id") as IntOrList?)?.values ?? []
            g.padTokenId = try c.optional("pad_token_id")
            g.maxLength = try c.optional("max_length")
            g.doSample = try c.value("do_sample", default: false)
            g.badWordsIds = try c.optional("bad_words_ids") ?? []
            return g
        }
    }
}
