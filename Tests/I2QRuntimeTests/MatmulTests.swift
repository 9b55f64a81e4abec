import XCTest
@testable import I2QRuntime

final class MatmulTests: XCTestCase {
    /// Small integer matrices: the exact product is known by hand (and exactly representable).
    func testLinearMatchesHandComputedProduct() {
        // x = [[1,2,3],[4,5,6]]  w = [[1,0,1],[0,1,0],[2,2,2],[-1,0,1]]  (torch Linear: y = x wᵀ)
        let y = Matmul.linear([1, 2, 3, 4, 5, 6], [1, 0, 1, 0, 1, 0, 2, 2, 2, -1, 0, 1], m: 2, k: 3, n: 4)
        XCTAssertEqual(y, [4, 2, 12, 2, 10, 5, 30, 2])
    }
}
