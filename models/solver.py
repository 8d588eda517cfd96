"""Mixed-integer linear programs through HiGHS (`highspy`): one call, status checked.

Team assembly seeds its search with a MILP on a linearised objective and batch assignment is a
MILP over (deal, partner) edges; both build a sparse constraint matrix and call `solve_milp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]


class SolverError(RuntimeError):
    """The solver did not prove an optimum (infeasible, unbounded, time limit...); names the status."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the MILP solver stopped without an optimum: {status}")
        self.status = status


@dataclass(frozen=True)
class MilpSolution:
    values: FloatArray  # (n,) optimal variable values (integers exactly where integrality was asked)
    objective: float


def solve_milp(
    cost: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    integer: npt.NDArray[np.bool_],
    rows: sparse.spmatrix,
    row_lower: FloatArray,
    row_upper: FloatArray,
    maximize: bool = True,
    time_limit_seconds: float = 30.0,
) -> MilpSolution:
    """Optimise cost @ x subject to row_lower <= rows @ x <= row_upper, lower <= x <= upper and
    integrality where `integer`; (n,) column arrays, (m, n) rows, (m,) row bounds (+-inf allowed).

    Raises SolverError unless HiGHS reports an optimal solution.
    """
    matrix = sparse.csc_matrix(rows, dtype=np.float64)
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("threads", 1)
    solver.setOptionValue("time_limit", float(time_limit_seconds))
    inf = highspy.kHighsInf
    solver.passModel(
        int(matrix.shape[1]),
        int(matrix.shape[0]),
        int(matrix.nnz),
        int(highspy.MatrixFormat.kColwise.value),
        int((highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize).value),
        0.0,
        np.asarray(cost, dtype=np.float64),
        np.asarray(lower, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
        np.clip(np.asarray(row_lower, dtype=np.float64), -inf, inf),
        np.clip(np.asarray(row_upper, dtype=np.float64), -inf, inf),
        matrix.indptr.astype(np.int32),
        matrix.indices.astype(np.int32),
        matrix.data,
        np.where(integer, highspy.HighsVarType.kInteger.value, highspy.HighsVarType.kContinuous.value).astype(np.int32),
    )
    solver.run()
    status = solver.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise SolverError(solver.modelStatusToString(status))
    values = np.asarray(solver.getSolution().col_value, dtype=np.float64)
    values[integer] = np.rint(values[integer])
    return MilpSolution(values=values, objective=float(solver.getInfo().objective_function_value))
