import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QEval

/// The shipped DocVQA-format set (Tests/Fixtures/docvqa-mini, scripts/fixtures/make_docvqa_set.py) and the loader's errors.
final class DocVQASetTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("docvqa") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testShippedSetLoads() throws {
        let set = try DocVQASet.load(directory: fixturesDir + "/docvqa-mini")
        XCTAssertTrue(set.file.hasSuffix("/val_v1.0.json"))
        XCTAssertEqual(set.items.count, 62)
        XCTAssertEqual(Set(set.items.map(\.questionId)).count, 62, "questionIds are unique")
        XCTAssertEqual(Set(set.items.compactMap(\.docId)).count, 24)
        let first = set.items[0]
        XCTAssertEqual(first.questionId, 1000)
        XCTAssertEqual(first.question, "What is the total amount due?")
        XCTAssertEqual(first.answers, ["$884.49", "884.49"])
        XCTAssertTrue(first.imagePath.hasPrefix("/") && first.imagePath.hasSuffix("documents/invoice_00.png"))
        XCTAssertTrue(try XCTUnwrap(first.documentText).contains("Total due: $884.49"))
        for it in set.items {
            XCTAssertFalse(it.answers.isEmpty)
            XCTAssertTrue(FileSystem.exists(it.imagePath))
            // Every answer is on the page (the page text is what text models read).
            let text = try XCTUnwrap(it.documentText).lowercased()
            XCTAssertTrue(it.answers.contains { text.contains($0.lowercased()) }, "\(it.questionId): no answer in the page text")
        }
    }

    func testSelectionIsSeededStableAndInSetOrder() throws {
        let set = try DocVQASet.load(directory: fixturesDir + "/docvqa-mini")
        let a = set.select(samples: 8, seed: 7), b = set.select(samples: 8, seed: 7), c = set.select(samples: 8, seed: 8)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertEqual(a.count, 8)
        XCTAssertEqual(Set(a.map(\.questionId)).count, 8)
        XCTAssertEqual(a.map(\.questionId), a.map(\.questionId).sorted())
        XCTAssertEqual(set.select(samples: 0, seed: 1).count, 62)
        XCTAssertEqual(set.select(samples: 1000, seed: 1).count, 62)
    }

    func writeSet(_ json: String, images: [String] = ["documents/a.png"], name: String = "val_v1.0.json") throws {
        try FileManager.default.createDirectory(atPath: dir + "/documents", withIntermediateDirectories: true)
        for i in images { try write([0x89, 0x50], to: dir + "/" + i) }
        try write(Array(json.utf8), to: dir + "/" + name)
    }

    func testOfficialLayoutWithoutOurExtensionLoads() throws {
        // The official files have no document_text; answers may be missing (test split).
        try writeSet(#"{"dataset_name":"docvqa","dataset_split":"test","data":[{"questionId":5,"question":"q?","image":"documents/a.png","docId":3},{"questionId":6,"question":"r?","image":"documents/a.png","answers":["x","y"]}]}"#,
                     name: "test_v1.0.json")
        let s = try DocVQASet.load(directory: dir)
        XCTAssertEqual(s.items.map(\.questionId), [5, 6])
        XCTAssertEqual(s.items[0].answers, [])
        XCTAssertNil(s.items[0].documentText)
        XCTAssertEqual(s.items[0].docId, 3)
        XCTAssertEqual(s.items[1].answers, ["x", "y"])
    }

    func testErrorsNameTheFileAndItem() throws {
        assertThrowsMentioning(["/nonexistent-docvqa", "does not exist"]) { _ = try DocVQASet.load(directory: "/nonexistent-docvqa") }
        assertThrowsMentioning(["no *.json"]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": [{"questionId": 1, "question": "q", "image": "documents/a.png", "answers": ["a"]}"#)
        assertThrowsMentioning(["val_v1.0.json", "invalid JSON"]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"items": []}"#)
        assertThrowsMentioning(["val_v1.0.json", "\"data\""]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": [{"questionId": 1, "question": "q", "image": "documents/a.png"}, {"questionId": 2, "image": "documents/a.png"}]}"#)
        assertThrowsMentioning(["item 1", "\"question\""]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": [{"questionId": "one", "question": "q", "image": "documents/a.png"}]}"#)
        assertThrowsMentioning(["item 0", "questionId", "integer"]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": [{"questionId": 9, "question": "q", "image": "documents/missing.png", "answers": ["a"]}]}"#)
        assertThrowsMentioning(["questionId 9", "documents/missing.png", "not found"]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": [{"questionId": 9, "question": "q", "image": "documents/a.png", "answers": "a"}]}"#)
        assertThrowsMentioning(["answers", "array of strings"]) { _ = try DocVQASet.load(directory: dir) }
        try writeSet(#"{"data": []}"#)
        assertThrowsMentioning(["empty"]) { _ = try DocVQASet.load(directory: dir) }
        // Two annotation files and no val_v1.0.json: ambiguous.
        try FileManager.default.removeItem(atPath: dir + "/val_v1.0.json")
        try write(Array("{}".utf8), to: dir + "/a.json")
        try write(Array("{}".utf8), to: dir + "/b.json")
        assertThrowsMentioning(["several JSON", "a.json", "b.json"]) { _ = try DocVQASet.load(directory: dir) }
    }
}
