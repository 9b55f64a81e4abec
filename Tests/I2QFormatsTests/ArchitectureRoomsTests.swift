import Foundation
import XCTest
import I2QTestSupport

/// Issue 18's acceptance, kept true: outside a family's own files and the registries, no source file
/// branches on Idefics2 (or Llama/Mistral) or spells their checkpoint prefixes; the passes that need
/// no forward do not import the runtime. (Reads the sources next to this test; comments ignored.)
final class ArchitectureRoomsTests: XCTestCase {
    let sources = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources").path

    func swiftFiles() throws -> [(path: String, code: [String])] {
        let fm = FileManager.default
        let e = try XCTUnwrap(fm.enumerator(atPath: sources))
        var out: [(String, [String])] = []
        for case let rel as String in e where rel.hasSuffix(".swift") {
            let text = try String(contentsOfFile: sources + "/" + rel, encoding: .utf8)
            let code = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                let s = String(line)
                if let r = s.range(of: "//") { return String(s[..<r.lowerBound]) }
                return s
            }
            out.append((rel, code))
        }
        return out
    }

    func testNoFileOutsideAFamilysRoomBranchesOnIt() throws {
        let idefics2Room: Set<String> = [
            "I2QFormats/Architectures/Idefics2Architecture.swift", "I2QFormats/Config/Idefics2Config.swift",
            "I2QFormats/Config/ModelRegistry.swift", "I2QRuntime/Models/Idefics2Model.swift",
            "I2QRuntime/Models/VisionTransformer.swift", "I2QRuntime/Models/PerceiverResampler.swift",
            "I2QRuntime/Generation/Idefics2Session.swift", "I2QRuntime/Generation/Idefics2Prompt.swift",
            "I2QRuntime/Generation/Idefics2Trace.swift",
            "I2QRuntime/Generation/VisionLanguageSession.swift", "I2QImage/Idefics2ImageProcessor.swift",
        ]
        // Idefics3/SmolVLM share the checkpoint prefixes with Idefics2 (model.vision_model., …), not its types.
        let idefics3Room: Set<String> = [
            "I2QFormats/Architectures/Idefics3Architecture.swift", "I2QFormats/Config/Idefics3Config.swift",
            "I2QFormats/Config/ModelRegistry.swift", "I2QRuntime/Models/Idefics3Model.swift",
            "I2QRuntime/Generation/Idefics3Session.swift", "I2QRuntime/Generation/VisionLanguageSession.swift",
            "I2QImage/Idefics3ImageProcessor.swift", "I2QPasses/Export/MmprojExportPass.swift",
        ]
        let llamaRoom: Set<String> = [
            "I2QFormats/Architectures/LlamaArchitecture.swift", "I2QFormats/Config/TextConfig.swift",
            "I2QFormats/Config/ModelRegistry.swift", "I2QFormats/Config/Idefics2Config.swift",  // its text_config default
        ]
        let idefics2 = try NSRegularExpression(pattern: #"\.idefics2\b|Idefics2(Session|Model|Config|Prompt)\b|"idefics2"|"model\.(text_model|vision_model|connector|language_model)\."#)
        // (tokenizer.json's own "model" object is not a checkpoint prefix; GGUF's general.architecture
        // "llama" is llama.cpp's name, not a model_type.)
        let llama = try NSRegularExpression(pattern: #""model\.(layers|embed_tokens|norm)|"model\."|modelType == "(llama|mistral)"|\["llama", "mistral"\]"#)
        let idefics3 = try NSRegularExpression(pattern: #"\.idefics3\b|Idefics3(Session|Model|Config|Prompt|ImageProcessor)\b|"idefics3"|"smolvlm""#)
        let idefics2Names = try NSRegularExpression(pattern: #"\.idefics2\b|Idefics2(Session|Model|Config|Prompt)\b|"idefics2""#)
        var hits: [String] = []
        for (path, code) in try swiftFiles() {
            for (i, line) in code.enumerated() {
                let r = NSRange(line.startIndex..., in: line)
                let inIdefics3 = idefics3Room.contains(path)
                if !idefics2Room.contains(path), (inIdefics3 ? idefics2Names : idefics2).firstMatch(in: line, range: r) != nil { hits.append("\(path):\(i + 1): \(line)") }
                if !inIdefics3, idefics3.firstMatch(in: line, range: r) != nil { hits.append("\(path):\(i + 1): \(line)") }
                if !llamaRoom.contains(path), !inIdefics3, !path.hasPrefix("I2QTokenizer/"), llama.firstMatch(in: line, range: r) != nil { hits.append("\(path):\(i + 1): \(line)") }
            }
        }
        XCTAssertEqual(hits, [], "architecture knowledge outside its room:\n" + hits.joined(separator: "\n"))
    }

    func testPassesThatNeedNoForwardDoNotImportTheRuntime() throws {
        let noForward = ["I2QPasses/CastPass.swift", "I2QPasses/QuantizePass.swift", "I2QPasses/FusePass.swift",
                         "I2QPasses/Export/AWQExportPass.swift", "I2QPasses/Export/BnbExportPass.swift",
                         "I2QPasses/Export/GGUFExportPass.swift", "I2QPasses/Export/GGUFExportInput.swift",
                         "I2QPasses/Export/GGUFExportPlan.swift", "I2QPasses/Export/GGUFLlamaMetadata.swift",
                         "I2QPasses/Export/GGUFVocabulary.swift", "I2QPasses/PassTypes.swift", "I2QPasses/Sinks.swift",
                         "I2QPasses/PassPipeline.swift", "I2QPasses/PassOutputs.swift"]
        let files = Dictionary(uniqueKeysWithValues: try swiftFiles().map { ($0.path, $0.code) })
        for f in noForward {
            let code = try XCTUnwrap(files[f], "\(f) moved: update this list")
            XCTAssertFalse(code.contains { $0.trimmingCharacters(in: .whitespaces) == "import I2QRuntime" }, "\(f) imports I2QRuntime")
        }
    }

    /// One room per scheme: an .i2q entry's component roles and scheme params are spelled only by its
    /// layout (I2QFormats/Schemes); every writer and reader takes them from there.
    func testOnlyASchemesLayoutSpellsItsRolesAndParams() throws {
        let spelled = try NSRegularExpression(pattern: #"(role: |component\()"(data|packed|absmax|nested_absmax|nested_code|qweight|scales|zeros|blocks)"|\("(blocksize|nested_blocksize|nested_offset[^"]*|pack_order|zero_point|ggml_type)", \.(int|float|string)\(|I2QSpec\.Scheme\.(nf4|fp4|affineInt4|ggml)"#)
        let allowed: (String) -> Bool = { $0.hasPrefix("I2QFormats/Schemes/") || $0 == "I2QFormats/I2QFile/I2QSpec.swift" }
        var hits: [String] = []
        for (path, code) in try swiftFiles() where !allowed(path) {
            for (i, line) in code.enumerated() where spelled.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) != nil {
                hits.append("\(path):\(i + 1): \(line)")
            }
        }
        XCTAssertEqual(hits, [], "scheme layout spelled outside Formats/Schemes:\n" + hits.joined(separator: "\n"))
    }
}
