import Foundation
import XCTest
import I2QCore
import I2QTestSupport

/// `i2q run --chat` applies the model's own chat template as transformers does (issue 20). Expected
/// token ids: transformers 5.24's `apply_chat_template(…, tokenize=True)` — the tokenizer's for
/// SmolLM2 (no special tokens added), the processor's for the trained Idefics2 (image tokens
/// expanded, BOS added) — scripts/fixtures/make_chat_run_goldens.py → chat-templates/run_goldens.json.
final class ChatCLITests: CLITestCase {
    override var tempPrefix: String { "cli-chat" }

    var root: String { URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path }

    func goldens() throws -> JSONValue {
        try JSONParser.parse(FileSystem.readFile(fixturesDir + "/chat-templates/run_goldens.json"), source: "run_goldens.json")
    }

    func ids(_ out: String) throws -> [Int] {
        try XCTUnwrap(try JSONParser.parse(Array(out.utf8), source: "stdout")["input_ids"]?.arrayValue?.compactMap(\.intValue))
    }

    func testSmolLM2ChatIdsEqualTransformers() throws {
        let model = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(model + "/model.safetensors") else {
            return XCTFail("SmolLM2 is not at \(model): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
        }
        let cases = try XCTUnwrap(try goldens()["smollm2"]?.arrayValue)
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let user = try XCTUnwrap(c["user"]?.stringValue)
            var args = ["run", model, "--chat", "--prompt", user, "--max-new-tokens", "1", "--json"]
            if let s = c["system"]?.stringValue { args += ["--system", s] }
            let r = try run(args)
            XCTAssertEqual(r.code, 0, r.err)
            XCTAssertEqual(try ids(r.out), try XCTUnwrap(c["input_ids"]?.arrayValue?.compactMap(\.intValue)), "\(user) system=\(c["system"]?.stringValue ?? "-")")
        }
    }

    func testIdefics2ChatIdsEqualTheProcessorAndTheAnswerIsRight() throws {
        let easy = ProcessInfo.processInfo.environment["I2Q_EASY_VQA"] ?? root + "/.cache/easy-vqa"
        guard FileSystem.exists(easy + "/test/images/0.png") else {
            return XCTFail("the easy-VQA test split is not at \(easy): run `bash scripts/get_easy_vqa.sh .cache/easy-vqa` (scripts/test.sh does) or set I2Q_EASY_VQA")
        }
        for c in try XCTUnwrap(try goldens()["easy_vqa_idefics2"]?.arrayValue) {
            let image = easy + "/" + (try XCTUnwrap(c["image"]?.stringValue)), user = try XCTUnwrap(c["user"]?.stringValue)
            let chat = try run(["run", fixturesDir + "/easy-vqa-idefics2", "--chat", "--image", image, "--prompt", user, "--max-new-tokens", "4", "--json"])
            XCTAssertEqual(chat.code, 0, chat.err)
            XCTAssertEqual(try ids(chat.out), try XCTUnwrap(c["input_ids"]?.arrayValue?.compactMap(\.intValue)), user)
            // The same as the hand-written prompt transformers rendered.
            let raw = try run(["run", fixturesDir + "/easy-vqa-idefics2", "--image", image, "--prompt", try XCTUnwrap(c["text"]?.stringValue), "--max-new-tokens", "4", "--json"])
            XCTAssertEqual(raw.out, chat.out)
        }
    }

    func testChatUsageErrors() throws {
        let noTemplate = try run(["run", fixturesDir + "/tiny-mistral", "--chat", "--prompt", "hi", "--max-new-tokens", "1"])
        XCTAssertEqual(noTemplate.code, 1)
        XCTAssertTrue(noTemplate.err.contains("has no chat template") && noTemplate.err.contains("no --chat"), noTemplate.err)
        let system = try run(["run", fixturesDir + "/tiny-mistral", "--system", "x", "--prompt", "hi"])
        XCTAssertNotEqual(system.code, 0)
        XCTAssertTrue(system.err.contains("--system needs --chat"), system.err)
        let image = try run(["run", fixturesDir + "/easy-vqa-idefics2", "--chat", "--prompt", "<image>what?"])
        XCTAssertNotEqual(image.code, 0)
        XCTAssertTrue(image.err.contains("leave out <image>"), image.err)
    }
}
