import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `inspect`, `run` and `perplexity` on an .i2q holding `ggml` entries (tiny-mistral with llama.cpp's
/// bytes, Tests/Fixtures/ggml-blocks).
final class GGMLCLITests: CLITestCase {
    override var tempPrefix: String { "ggmlcli" }

    func testInspectRunPerplexity() throws {
        let model = fixturesDir + "/tiny-mistral", path = dir + "/m.i2q"
        try GGMLBlocksFixture("tiny-mistral").writeModel(try openModel(model), configPath: model + "/config.json", to: path)
        let inspect = try run(["inspect", path])
        XCTAssertEqual(inspect.code, 0, inspect.err)
        // 8 · block bytes / block size: Q4_0 18/32, Q4_1 20/32, Q8_0 34/32.
        for (label, bits) in [("ggml q4_0", "4.50 bits/weight"), ("ggml q4_1", "5.00 bits/weight"), ("ggml q8_0", "8.50 bits/weight"),
                              ("ggml q5_0", "5.50 bits/weight"), ("ggml q5_1", "6.00 bits/weight")] {
            let line = inspect.out.split(separator: "\n").first { $0.contains(label) }
            XCTAssertTrue(line?.contains(bits) == true, "\(label): \(line ?? "missing")\n\(inspect.out)")
        }
        // The prompt tokenizes to the fixture's ids [1, 415, …, 10575]: transformers' greedy next
        // token on the gguf-py-dequantized weights is the argmax of its last logits row, 2035.
        // transformers' numerics on the dequantized weights (the default is llama.cpp's 8-bit activations).
        let r = try run(["run", path, "--ggml-f32-activations", "--prompt", "The quick brown fox jumps", "--max-new-tokens", "1", "--json"])
        XCTAssertEqual(r.code, 0, r.err)
        let j = try JSONParser.parse(Array(r.out.utf8), source: "run --json")
        let expected = fixturesDir + "/ggml-blocks/tiny-mistral.expected.safetensors"
        let ids = try i64Tensor(expected, "input_ids"), ref = try XCTUnwrap(try f32Tensors(expected)["logits"])
        XCTAssertEqual(j["input_ids"]?.arrayValue?.compactMap(\.intValue), ids)
        XCTAssertEqual(j["generated_ids"]?.arrayValue?.compactMap(\.intValue), [2035])
        // Perplexity of the same 8 tokens (one window, positions 1…7) against exp(mean NLL) of
        // transformers' logits rows 0…6 (log-softmax in double).
        let text = dir + "/t.txt"
        try write(Array("The quick brown fox jumps".utf8), to: text)
        let ppl = try run(["perplexity", path, "--ggml-f32-activations", "--text", text, "--ctx", "8", "--json"])
        XCTAssertEqual(ppl.code, 0, ppl.err)
        let v = ref.count / ids.count
        var nll = 0.0
        for p in 0..<(ids.count - 1) {
            let row = ref[(p * v)..<((p + 1) * v)].map(Double.init)
            let m = row.max()!
            let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
            nll += lse - row[ids[p + 1]]
        }
        let want = Foundation.exp(nll / Double(ids.count - 1))
        let got = try XCTUnwrap(try JSONParser.parse(Array(ppl.out.utf8), source: "perplexity --json")["ppl"]?.doubleValue)
        print("tiny-mistral ggml perplexity \(got), transformers \(want)")
        XCTAssertEqual(got, want, accuracy: 1e-4 * want)
    }
}
