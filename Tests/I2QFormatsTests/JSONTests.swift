import XCTest
import I2QCore

/// RFC 8259 behaviour of the strict parser (expected values from the RFC's grammar).
final class JSONTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONParser.parse(Array(s.utf8), source: "t") }

    func testScalarsAndOrder() throws {
        let v = try parse(#"{"b": 1, "a": [true, false, null, -0.5e3, "x\u00e9\ud83d\ude00\n"]}"#)
        XCTAssertEqual(v.objectEntries?.map(\.0), ["b", "a"])
        XCTAssertEqual(v["b"], .number("1"))
        XCTAssertEqual(v["a"]?.arrayValue?[3], .number("-0.5e3"))
        XCTAssertEqual(v["a"]?.arrayValue?[4], .string("xé😀\n"))
    }

    func testBigIntegersStayExact() throws {
        XCTAssertEqual(try parse("18446744073709551615").uint64Value, UInt64.max)
    }

    func testRejects() {
        for bad in ["{", "[1,]", "{\"a\":1,}", "01", "1.", "\"\u{01}\"", "{\"a\" 1}", "tru", "\"\\x\"", "[1] 2", "\"\\ud800\""] {
            XCTAssertThrowsError(try parse(bad), "should reject \(bad)")
        }
    }

    func testDuplicateKeyReportsKeyAndDepth() {
        XCTAssertThrowsError(try parse(#"{"x": {"k": 1, "k": 2}}"#)) { e in
            let j = e as? JSONError
            XCTAssertEqual(j?.duplicateKey, "k")
            XCTAssertEqual(j?.depth, 2)
        }
    }

    func testCanonicallyEquivalentKeysAreDistinct() throws {
        // "é" (U+00E9) and "e" + U+0301 are different JSON keys (RFC 8259 compares code points).
        let v = try parse("{\"\u{E9}\": 1, \"e\u{301}\": 2}")
        XCTAssertEqual(v.objectEntries?.count, 2)
    }

    func testWriterMatchesPythonIndent2() throws {
        // Python: json.dumps({"a": [1, {"b": "é"}], "c": {}}, indent=2)
        let expected = "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"\\u00e9\"\n    }\n  ],\n  \"c\": {}\n}"
        let v = try parse(#"{"a":[1,{"b":"é"}],"c":{}}"#)
        XCTAssertEqual(JSONWriter.string(v, indent: 2), expected)
        XCTAssertEqual(try parse(JSONWriter.string(v)), v)
    }
}
