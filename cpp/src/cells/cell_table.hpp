// The C++ cell table: what the kernels, the Stepper and the bindings know about each CellKind, in one row per cell.
// A new cell variant is a row here, a cell header (cells/*.hpp) and its wiring .cpp.
#pragma once

#include <string>
#include <string_view>

#include "rnncore/contract.hpp"

namespace rnncore::detail {

/// One row of the cell table.
struct CellTraits {
  CellKind kind;
  const char* name;     ///< the name Python passes and reads back ("lstm", "gru", "rnn")
  index_t gates;        ///< G: gate blocks of H columns in w_ih, w_hh, b_ih, b_hh (order in rnncore/contract.hpp)
  int states;           ///< state arrays carried between steps: h, and c for the LSTM
  index_t stored_acts;  ///< activation columns per unit kept in the workspace per step (Workspace::acts is [T*B, S*H])
};

/// Stored activations: LSTM i, f, g, o; GRU r, z, n and hn (reset_after) or r ⊙ h (reset_before); simple RNN none
/// (its output h is the activation backward needs).
inline constexpr CellTraits kCellTable[] = {
    {CellKind::lstm, "lstm", 4, 2, 4},
    {CellKind::gru, "gru", 3, 1, 4},
    {CellKind::rnn, "rnn", 1, 1, 0},
};

/// The row of `kind`.
constexpr const CellTraits& cell_traits(CellKind kind) { return kCellTable[static_cast<int>(kind)]; }

/// The cell kind a name stands for; false when no cell has that name.
inline bool cell_kind_named(std::string_view name, CellKind& kind) {
  for (const CellTraits& row : kCellTable)
    if (name == row.name) {
      kind = row.kind;
      return true;
    }
  return false;
}

/// "'lstm', 'gru', 'rnn'": the accepted names, for error messages.
inline std::string cell_names_quoted() {
  std::string names;
  for (const CellTraits& row : kCellTable) names += std::string(names.empty() ? "'" : ", '") + row.name + "'";
  return names;
}

/// The gates of one unit in a cell's hidden product h · W_hh^T, for StepProduct's unit_gates (the *_step functions
/// take the product unit by unit): every gate, except GRU reset_before, whose n block has its own product
/// ((r ⊙ h) · W_hn^T, kGruResetUnitGates in cells/gru.hpp) and leaves r and z.
constexpr index_t hidden_unit_gates(const CellSpec& spec) {
  return spec.kind == CellKind::gru && !spec.reset_after ? 2 : cell_traits(spec.kind).gates;
}

// The table is indexed by CellKind, and CellSpec::gates() (the public header's copy) agrees with it.
static_assert(cell_traits(CellKind::lstm).kind == CellKind::lstm && cell_traits(CellKind::gru).kind == CellKind::gru &&
              cell_traits(CellKind::rnn).kind == CellKind::rnn);
static_assert(CellSpec{CellKind::lstm}.gates() == cell_traits(CellKind::lstm).gates &&
              CellSpec{CellKind::gru}.gates() == cell_traits(CellKind::gru).gates &&
              CellSpec{CellKind::rnn}.gates() == cell_traits(CellKind::rnn).gates);

}  // namespace rnncore::detail
